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

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from dataplane.core.validate import HubRequest
from dataplane.snapshot.runtime import Deployment


@dataclass(unsafe_hash=True)
class Complete:
    body: Final[bytes]
    # The body is in the client's own dialect (``HubRequest.native`` passed through: a Responses API object, an
    # Anthropic token count), not the hub format of the request's surface.
    native: Final[bool]
    estimated: Final[bool]  # a token count the gateway estimated rather than the provider counted
    # The body's JSON, once the attempt has checked it; not compared (a field with a ``field()`` cannot be ``Final``).
    parsed: Any = field(compare=False)

    def __init__(self, body: bytes, native: bool = False, estimated: bool = False,
                 parsed: Any = None) -> None:
        self.body = body
        self.native = native
        self.estimated = estimated
        self.parsed = parsed


class LastBatch(list[bytes]):
    """A batch of ``Stream.batches`` known to be the last one (the upstream said ``[DONE]``): a consumer may
    end its answer with it instead of asking for more."""


@dataclass(unsafe_hash=True)
class Stream:
    events: Final[AsyncGenerator[bytes, None]]
    close: Final[Callable[[], None]]
    # The same events grouped as they arrived from the upstream, when the adapter can tell: a consumer iterates
    # this instead of ``events`` (never both) to forward each group in one write. Raises like ``events``.
    batches: Final[AsyncGenerator[list[bytes], None] | None]
    native: Final[bool]  # the events are in the client's own dialect (a Responses API event stream)

    def __init__(self, events: AsyncGenerator[bytes, None], close: Callable[[], None],
                 batches: AsyncGenerator[list[bytes], None] | None = None, native: bool = False) -> None:
        self.events = events
        self.close = close
        self.batches = batches
        self.native = native


class Adapter(Protocol):
    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        """``timeout_s`` bounds the time until the answer starts (for ``Complete``: until it is read whole)."""
        ...
