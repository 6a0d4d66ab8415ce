"""``Alarms``: the request path's timers, one loop timer for all the deadlines that end in the same tick.

Each upstream attempt, each wait for an upstream's answer and each read of a stream has a deadline, and nearly
all of them are cancelled long before they end. A loop timer for each (``loop.call_at`` and its ``cancel``) costs
2-3 µs with uvloop (a handle, a libuv timer in its heap, a close callback), and a request set two or more.
``Alarms.at`` rounds a deadline up to the end of its tick (``TICK_S``) and adds it to that tick's ring: one loop
timer a tick, however many deadlines end in it; setting an alarm is a set insertion, cancelling it a removal
(and the ring's timer is cancelled with its last alarm). An alarm goes off at most one tick late, never before
its time (the loop's own rounding aside).

One ``Alarms`` per event loop, used from that loop only (``dataplane.api.appstate.AppState.alarms``, shared with
the upstream client).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Final

TICK_S: Final = 0.005


class Alarm:
    """One deadline's callback, waiting in its tick's ring. ``cancel`` is idempotent."""

    def __init__(self, alarms: Alarms, ring: _Ring, callback: Callable[[], None]) -> None:
        self._alarms = alarms
        self._ring = ring
        self.callback = callback

    def cancel(self) -> None:
        # The callback let go: it is often a bound method of the alarm's owner, which holds the alarm (a
        # ``Deadline``), and the cycle would leave both to the cyclic garbage collector, whose full passes stall
        # the loop for milliseconds.
        self.callback = _nothing
        ring = self._ring
        ring.alarms.discard(self)
        if not ring.alarms and ring.handle is not None:  # its tick's last alarm, the ring still waiting
            self._alarms._drop(ring)


def _nothing() -> None:
    pass


class _Ring:
    """The alarms of one tick and the loop timer that rings them."""

    def __init__(self, tick: int) -> None:
        self.tick = tick
        self.alarms: set[Alarm] = set()
        self.handle: asyncio.TimerHandle | None = None  # None once rung or dropped: then it is out of ``_rings``


class Alarms:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._rings: dict[int, _Ring] = {}

    def time(self) -> float:
        """The loop's clock (``loop.time()``), which deadlines are measured in."""
        return self.loop.time()

    def at(self, when: float, callback: Callable[[], None]) -> Alarm:
        """Call ``callback`` at ``when`` (a ``loop.time()``) or at most ``TICK_S`` later, unless cancelled first."""
        tick = math.ceil(when / TICK_S)
        ring = self._rings.get(tick)
        if ring is None:
            ring = self._rings[tick] = _Ring(tick)
            ring.handle = self.loop.call_at(tick * TICK_S, self._ring, ring)
        alarm = Alarm(self, ring, callback)
        ring.alarms.add(alarm)
        return alarm

    def pending(self) -> int:
        """Alarms set and neither rung nor cancelled (for tests)."""
        return sum(len(ring.alarms) for ring in self._rings.values())

    def _drop(self, ring: _Ring) -> None:
        # Its last alarm was cancelled: the timer would ring nothing.
        assert ring.handle is not None
        ring.handle.cancel()
        ring.handle = None
        del self._rings[ring.tick]

    def _ring(self, ring: _Ring) -> None:
        ring.handle = None
        del self._rings[ring.tick]
        alarms = ring.alarms
        while alarms:
            alarm = alarms.pop()
            callback, alarm.callback = alarm.callback, _nothing
            try:
                callback()
            except Exception as exc:  # one failing callback must not keep the others of its tick from ringing
                self.loop.call_exception_handler({"message": "alarm callback failed", "exception": exc})
