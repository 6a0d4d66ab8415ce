"""``Outbox``: the request path's socket writes, held to the event loop's next turn when it is busy, then made
together.

A write to a socket whose reader sleeps wakes that reader, and the writer pays for it in the kernel: on a virtual
machine the wake-up of a process on another CPU is an inter-processor interrupt, a VM exit, several
microseconds. At saturation the data plane serves many requests per loop turn, and written as each request got
there, its writes came some 50 µs apart (the policy of the next request between them): time enough for the
upstream, and the client, to finish what they had and go back to sleep, so nearly every write woke one of them
(``bench``: the upstream slept 0.85 times a request; with the writes held to the turn's end, 0.05 times, as
behind a bare aiohttp proxy, whose client writes its bodies in tasks of their own). Held, the writes of one turn
leave back to back: the first wakes the reader, the rest find it awake.

Held only while the loop is busy and other requests are in flight (``busy``: ``Overload.busy``, from the loop's
lag and its thread's share of the CPU over the last 200 ms). A held write leaves when the callbacks already
queued have run, after the rest of its own request's turn: on an idle loop that costs a poll and, for a stream,
puts the request's bookkeeping (usage record, log line) before its last bytes instead of after them, which at one
to sixteen connections made a stream's time to last chunk 0.2-0.6 ms longer and bought nothing, as there is
nothing to write with it. Writes to one transport keep their order; a transport closing by the time its turn
comes gets nothing (its connection is being torn down: what was queued for it has no reader). Whoever writes a
transport both here and directly (an error answer, ``write_eof``) calls ``flush(transport)`` first, so nothing
written directly overtakes what waits here.

Owned by one event loop, like the transports it writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _always() -> bool:
    return True


class Outbox:
    __slots__ = ("_busy", "_loop", "_pending")

    def __init__(self, busy: Callable[[], bool] | None = None) -> None:
        self._pending: list[tuple[asyncio.WriteTransport, bytes]] = []
        self._busy = busy or _always  # whether to hold writes now (None: always)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it runs on (known at the first hold)

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        """Write ``data`` to ``transport``: on the loop's next turn while it is busy (after what was held for it
        before), else at once."""
        pending = self._pending
        if not pending:
            if not self._busy():
                _write(transport, data)
                return
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
        pending.append((transport, data))

    def flush(self, transport: asyncio.WriteTransport) -> None:
        """Write now what waits for ``transport`` (before writing it directly, or closing it)."""
        pending = self._pending
        if not any(t is transport for t, _ in pending):
            return
        self._pending = [(t, data) for t, data in pending if t is not transport]
        for t, data in pending:
            if t is transport:
                _write(t, data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for transport, data in pending:
            _write(transport, data)


def _write(transport: asyncio.WriteTransport, data: bytes) -> None:
    if transport.is_closing():
        return
    try:
        transport.write(data)
    except (RuntimeError, OSError) as exc:  # a transport that ended its sending side meanwhile
        log.debug("a held write was dropped: %s", exc)
