"""Upstream adapters: one per provider wire schema, behind one small interface.

An adapter turns a planned request into an upstream answer. ``send`` either returns a ``Complete`` (the whole
JSON body of a non-streaming answer) or a ``Stream`` (an async iterator over the payloads of the upstream's SSE
``data:`` events, ``[DONE]`` excluded), or raises ``UpstreamFailure`` — before any byte reached the client, so
the caller may fail over. Iterating a ``Stream`` raises ``UpstreamFailure`` if the upstream dies mid-stream.
All bodies are already in the OpenAI chat completion format.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from dataplane.runtime import Deployment
from dataplane.validate import ChatRequest


@dataclass(frozen=True, slots=True)
class Complete:
    body: bytes


@dataclass(frozen=True, slots=True)
class Stream:
    events: AsyncGenerator[bytes, None]
    close: Callable[[], None]


class Adapter(Protocol):
    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        """``timeout_s`` bounds the time until the answer starts (for ``Complete``: until it is read whole)."""
        ...
