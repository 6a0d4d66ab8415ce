"""Upstream adapters: one per provider wire schema, behind one small interface.

An adapter turns a planned request into an upstream answer. ``send`` either returns a ``Complete`` (the whole
JSON body of a non-streaming answer) or a ``Stream`` (an async iterator over the payloads of the upstream's SSE
``data:`` events, ``[DONE]`` excluded, and optionally the same events grouped as they arrived), or raises
``UpstreamFailure`` — before any byte reached the client, so the caller may fail over. Iterating a ``Stream``
raises ``UpstreamFailure`` if the upstream dies mid-stream. Bodies are in the OpenAI format of the request's
surface (chat completions, embeddings, legacy completions, moderations) unless marked ``native``: then they are
the client's own dialect, passed through (the Responses API to a provider that speaks it natively).
"""

from __future__ import annotations

from typing import Protocol

from dataplane.core.validate import HubRequest
from dataplane.snapshot.runtime import Deployment
from dataplane.upstream.adapters.reply import Batches, Complete, LastBatch, Stream

__all__ = ["Adapter", "Batches", "Complete", "LastBatch", "Stream"]


class Adapter(Protocol):
    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        """``timeout_s`` bounds the time until the answer starts (for ``Complete``: until it is read whole)."""
        ...
