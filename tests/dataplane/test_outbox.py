"""``Outbox``: writes held until the loop's next turn while it is busy, then made in order; over real socket
pairs, whose far ends are read without yielding to the loop (so "not yet written" is seen as the peer sees it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dataplane.outbox import Outbox


@asynccontextmanager
async def pairs(n: int) -> AsyncIterator[list[tuple[asyncio.Transport, socket.socket]]]:
    """``n`` connections: the loop's transport of one end, the other end as a plain non-blocking socket."""
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(n):
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
        out.append((transport, theirs))
    try:
        yield out
    finally:
        for transport, theirs in out:
            transport.close()
            theirs.close()


def arrived(peer: socket.socket) -> bytes:
    """What reached the peer so far, read at once (b"" if nothing; b"<closed>" once the connection closed)."""
    try:
        data = peer.recv(1 << 16)
    except BlockingIOError:
        return b""
    return data or b"<closed>"


async def test_writes_leave_on_the_next_turn_in_order_per_connection() -> None:
    async with pairs(2) as [(a, a_peer), (b, b_peer)]:
        outbox = Outbox()
        outbox.write(a, b"a1 ")
        outbox.write(b, b"b1 ")
        outbox.write(a, b"a2")
        assert arrived(a_peer) == b"" and arrived(b_peer) == b""  # held for the turn
        await asyncio.sleep(0)
        assert arrived(a_peer) == b"a1 a2"
        assert arrived(b_peer) == b"b1 "
        outbox.write(b, b"b2")  # a later turn: held and sent again
        assert arrived(b_peer) == b""
        await asyncio.sleep(0)
        assert arrived(b_peer) == b"b2"


async def test_flush_sends_one_connections_writes_now_and_keeps_the_others_for_the_turn() -> None:
    async with pairs(2) as [(a, a_peer), (b, b_peer)]:
        outbox = Outbox()
        outbox.write(a, b"answer ")
        outbox.write(b, b"other")
        outbox.flush(a)
        a.write(b"refusal")  # written directly: after what the outbox held for it
        assert arrived(a_peer) == b"answer refusal"
        assert arrived(b_peer) == b""
        await asyncio.sleep(0)
        assert arrived(b_peer) == b"other"
        assert arrived(a_peer) == b""  # flushed once: nothing sent twice


async def test_a_connection_closed_before_its_turn_gets_nothing_and_the_others_still_do() -> None:
    async with pairs(2) as [(a, a_peer), (b, b_peer)]:
        outbox = Outbox()
        outbox.write(a, b"lost")
        outbox.write(b, b"kept")
        a.close()
        for _ in range(3):
            await asyncio.sleep(0)
        assert arrived(b_peer) == b"kept"
        assert arrived(a_peer) == b"<closed>"  # closed, with nothing written


async def test_while_the_loop_is_not_busy_a_write_is_made_at_once() -> None:
    busy = False
    async with pairs(1) as [(a, a_peer)]:
        outbox = Outbox(lambda: busy)
        outbox.write(a, b"now")
        assert arrived(a_peer) == b"now"
        busy = True
        outbox.write(a, b"held")
        busy = False
        outbox.write(a, b" behind")  # something is held for the turn: this goes after it, not before
        assert arrived(a_peer) == b""
        await asyncio.sleep(0)
        assert arrived(a_peer) == b"held behind"
