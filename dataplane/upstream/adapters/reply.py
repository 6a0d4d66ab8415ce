"""What an adapter's ``send`` returns (``dataplane.upstream.adapters``): a ``Complete`` answer or a ``Stream``.

Apart from the package's ``__init__`` so that mypyc compiles them with the request path (``dataplane.compiled``):
the attempt and the answer's relay read them on every request. Imported from ``dataplane.upstream.adapters``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr


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


@mypyc_attr(native_class=False)  # a list subclass: mypyc makes native classes of plain ones only
class LastBatch(list[bytes]):
    """A batch of ``Stream.batches`` known to be the last one (the upstream said ``[DONE]``): a consumer may
    end its answer with it instead of asking for more."""


class Batches(Protocol):
    """A stream's events grouped as they arrived (``Stream.batches``): an async iterator of lists of payloads,
    ``aclose`` releasing what it reads from. An ``async def`` generator is one; ``wire.SseBatches``, a compiled
    class, is the one the SSE adapters return."""

    def __aiter__(self) -> AsyncIterator[list[bytes]]: ...

    def __anext__(self) -> Awaitable[list[bytes]]: ...

    def aclose(self) -> Awaitable[None]: ...


@dataclass(unsafe_hash=True)
class Stream:
    events: Final[AsyncGenerator[bytes, None]]
    close: Final[Callable[[], None]]
    # The same events grouped as they arrived from the upstream, when the adapter can tell: a consumer iterates
    # this instead of ``events`` (never both) to forward each group in one write. Raises like ``events``.
    batches: Final[Batches | None]
    native: Final[bool]  # the events are in the client's own dialect (a Responses API event stream)

    def __init__(self, events: AsyncGenerator[bytes, None], close: Callable[[], None],
                 batches: Batches | None = None, native: bool = False) -> None:
        self.events = events
        self.close = close
        self.batches = batches
        self.native = native
