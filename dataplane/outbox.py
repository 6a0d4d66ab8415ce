"""``Outbox``: the request path's socket writes, held until the event loop's next turn and then made together.

A write to a socket whose reader sleeps wakes that reader, and the writer pays for it in the kernel: on a virtual
machine the wake-up of a process on another CPU is an inter-processor interrupt, a VM exit, several
microseconds. At saturation the data plane serves many requests per loop turn, and written as each request
got there, its writes came some 50 µs apart (the policy of the next request between them): time enough for
the upstream, and the client, to finish what they had and go back to sleep, so nearly every write woke one of
them (``bench``: the upstream slept 0.85 times a request; with the writes held to the turn's end, 0.05 times,
as behind a bare aiohttp proxy, whose client writes its bodies in tasks of their own). Held, the writes of one
turn leave back to back: the first wakes the reader, the rest find it awake.

The cost is one loop turn: a write leaves when the callbacks already queued have run (nothing at one
connection, where there are none). Writes to one transport keep their order; a transport closing by the
time its turn comes gets nothing (its connection is being torn down: what was queued for it has no reader).
Whoever writes a transport both here and directly (an error answer, ``write_eof``) calls ``flush(transport)``
first, so nothing written directly overtakes what waits here.

Owned by one event loop, like the transports it writes.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class Outbox:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[tuple[asyncio.WriteTransport, bytes]] = []

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        """Write ``data`` to ``transport`` on the loop's next turn, after what was queued for it before."""
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self._flush)
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
