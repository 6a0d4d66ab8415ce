"""The overload manager: how many requests the data plane serves at once, and when it refuses the rest.

Two bounds. ``max_in_flight`` is fixed (``--max-in-flight``). Below it, the limit follows the event loop: a
timer measures how late the loop runs it (the loop's lag: how long a callback that became ready waits behind the
work already queued, about half a loop iteration), and when the lag averaged over a window exceeds
``target_lag_s`` (one long callback or a collection pause moves the average of ten samples little) the limit
drops to a share of what is in flight; when the average stays under half the target it grows back.
A request beyond the limit is refused at once (503 ``overloaded``, ``Retry-After``): by the connection edge
before aiohttp builds a request (``connection.edge``), else at the top of the request path. Refused early, a
request costs microseconds rather than a queue position, so admitted requests keep their latency and refusals
are quick, and the requests in flight (each holding its body, plan and buffers) stay bounded, so memory stays
flat.

The same timer tells whether the loop is busy (``busy``), for ``dataplane.outbox``, which holds the request
path's writes to the loop's next turn meanwhile: the lag alone cannot tell it on uvloop, whose clock (``loop.time``)
moves in whole milliseconds, so a loop whose turns last under a millisecond shows no lag however full it is; the
share of the window the loop's thread spent on the CPU (``utilization``) does.

An idle data plane does not tick: a window that ends with nothing in flight, the limit at its ceiling and the loop
not busy parks the timer (``sampling`` turns False; the gauges keep that last window's figures), and the next
request counted (``hold`` at the edge, ``enter`` on the request path) starts a new window. Idle, the loop then
wakes only for its own timers, not 50 times a second.

``next_limit`` is the control law, pure; ``Overload`` owns the counts and the timer (on the event loop, no lock).
"""

from __future__ import annotations

import asyncio
import time

from mypy_extensions import mypyc_attr

from dataplane.errors import ApiError

WINDOW_S = 0.2  # the lag is averaged over this long
TICK_S = 0.02  # how often the lag is sampled
SHRINK = 0.7  # on overload the limit drops to this share of the requests in flight
GROW = 1.125  # and grows by this factor (at least 1) a window when the loop keeps up
OVERLOADED = ApiError(503, "the gateway is at capacity; retry shortly", "server_error", "overloaded")
BUSY_LAG_S = 0.0005  # a lag from which the loop counts as busy (``busy``)
BUSY_SHARE = 0.5  # or a share of the window on the CPU (``utilization``)
FLOOR = 64  # the adaptive limit never drops below this many (or below max_in_flight, if smaller)


def next_limit(limit: int, in_flight: int, lag_s: float, target_lag_s: float, floor: int, ceiling: int) -> int:
    """The limit after a window whose average lag was ``lag_s`` (pure): shrink on overload, grow while the loop
    keeps up, else keep it."""
    if lag_s > target_lag_s:
        return max(floor, min(limit, int(in_flight * SHRINK)))
    if lag_s < target_lag_s / 2:
        return min(ceiling, max(limit + 1, int(limit * GROW)))
    return limit


def busy_window(lag_s: float, share: float) -> bool:
    """Whether a window whose average lag was ``lag_s``, with the loop's thread on the CPU ``share`` of it, counts
    as busy (pure): callbacks queued behind others, or a loop rarely idle."""
    return lag_s >= BUSY_LAG_S or share >= BUSY_SHARE


@mypyc_attr(allow_interpreted_subclasses=True)  # (compiled, ``dataplane.compiled``): tests make one always busy
class Overload:
    """Requests in flight against the limit (``full``), the requests shed, and the loop monitor (its lag and its
    thread's share of the CPU, per window)."""

    __slots__ = ("_busy", "_cpu_start", "_handle", "_lag_sum", "_loop", "_samples", "_wall_start", "ceiling", "count",
                 "floor", "lag_s", "limit", "pending", "shed", "target_lag_s", "utilization")

    def __init__(self, max_in_flight: int, target_lag_s: float = 0.01) -> None:
        self.ceiling = max_in_flight
        self.floor = min(FLOOR, max_in_flight)
        self.limit = max_in_flight
        self.target_lag_s = target_lag_s  # 0: the fixed bound only
        self.count = 0  # requests on the request path
        self.pending = 0  # let through by the connection edge, their request path not started yet
        self.shed = 0  # requests refused as overload, for /metrics
        self.lag_s = 0.0  # the last window's average lag, for /metrics
        self.utilization = 0.0  # the share of the last window the loop's thread was on the CPU, for /metrics
        self._busy = False  # the last window's lag or utilization says busy
        self._cpu_start = self._wall_start = 0.0  # the window's start: the loop thread's CPU time, the time
        self._loop: asyncio.AbstractEventLoop | None = None  # while started
        self._handle: asyncio.TimerHandle | None = None
        self._lag_sum = 0.0
        self._samples = 0

    def full(self) -> bool:
        return self.count + self.pending >= self.limit

    def busy(self) -> bool:
        """Other requests are in flight and, over the last window, the loop had a queue (callbacks waited
        ``BUSY_LAG_S`` or more for their turn) or its thread was on the CPU ``BUSY_SHARE`` of the time: a write
        now likely has company in this turn (``dataplane.outbox`` holds the request path's writes to the next
        turn meanwhile). A lone request is never held: it has nothing to leave with."""
        return self._busy and self.count + self.pending > 1

    def hold(self) -> None:
        """One more request let through by the connection edge, its request path not started yet."""
        self.pending += 1
        if self._handle is None and self._loop is not None:  # parked while idle
            self._resume()

    def enter(self) -> None:
        """One more request on the request path (``count``; the caller takes it off when it has settled)."""
        self.count += 1
        if self._handle is None and self._loop is not None:  # parked while idle
            self._resume()

    @property
    def sampling(self) -> bool:
        """Whether the timer is running (started, and not parked by an idle window)."""
        return self._handle is not None

    def start(self) -> None:
        """Sample the loop's lag and CPU share from now on (with a lag target; on the running loop)."""
        if self.target_lag_s <= 0 or self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._resume()

    def _resume(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._cpu_start, self._wall_start = time.thread_time(), time.perf_counter()
        self._lag_sum, self._samples = 0.0, 0
        self._handle = loop.call_at(now + TICK_S, self._tick, now + TICK_S)

    def stop(self) -> None:
        self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.limit = self.ceiling
        self.lag_s = self.utilization = self._lag_sum = 0.0
        self._samples = 0
        self._busy = False

    def _tick(self, due: float) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._lag_sum += now - due
        self._samples += 1
        wall = time.perf_counter()
        if wall - self._wall_start >= WINDOW_S:
            self.lag_s = lag = self._lag_sum / self._samples
            cpu = time.thread_time()
            self.utilization = share = (cpu - self._cpu_start) / (wall - self._wall_start)
            self._cpu_start, self._wall_start = cpu, wall
            self._busy = busy_window(lag, share)
            self.limit = next_limit(self.limit, self.count + self.pending, lag, self.target_lag_s, self.floor,
                                    self.ceiling)
            self._lag_sum, self._samples = 0.0, 0
            if not self._busy and self.count + self.pending == 0 and self.limit == self.ceiling:
                self._handle = None  # idle: parked until the next request (``hold``, ``enter``)
                return
        self._handle = loop.call_at(now + TICK_S, self._tick, now + TICK_S)
