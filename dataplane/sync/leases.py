"""The lease client: keeps this data plane's budget grants and rate shares current (background task).

Every ``interval_s`` (sooner when the budget book reports a shortfall) it sends one ``LeaseRequest``: per budget
allowance what was spent, what is reserved and what it wants (sized by recent demand) or gives back, and per
fleet-wide rate scope the demand the rate limiter observed. The answer's grants are absolute amounts, valid for
``ttl_s`` from when the request was *sent* (so a late answer can only shorten a lease, never lengthen it), and are
handed to the ``BudgetBook``; the shares go to the limiter. One request at a time, so answers apply in order.

Without the control plane nothing is applied: grants run out at their expiry and the book refuses what they no
longer cover. Foreign exceptions (grpc) are translated here; the loop logs and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

import grpc

from dataplane.core.limits.budget import BudgetBook
from dataplane.settings import DataPlaneSettings
from dataplane.sync.channel import REOPEN_AFTER_FAILURES, control_plane_channel
from tollway.money import micros_ceil, parse_pico, pico_text
from tollway.pb import leases_pb2 as lpb
from tollway.pb import leases_pb2_grpc as lgrpc
from tollway.tasks import cancel

log = logging.getLogger(__name__)


class RateLimiterPort(Protocol):
    """What the lease client needs of ``dataplane.core.limits.ratelimit.RateLimiter``."""

    def demand(self) -> dict[str, tuple[float, float]]: ...

    def refusals(self) -> dict[str, int]: ...

    def set_shares(self, shares: dict[str, tuple[float, float]], expires_at: float) -> None: ...


class LeaseClient:
    """Owned by ``DataPlane``: ``start`` once, ``await stop()`` once."""

    def __init__(self, settings: DataPlaneSettings, book: BudgetBook, limiter: RateLimiterPort | None = None, *,
                 interval_s: float = 1.0, timeout_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._book = book
        self._limiter = limiter
        self._interval = interval_s
        self._timeout = timeout_s
        self._clock = clock
        self.incarnation = secrets.token_hex(8)
        self._metadata = (("authorization", f"Bearer {settings.control_plane_token}"),) \
            if settings.control_plane_token else ()
        self._wake = asyncio.Event()
        # Exchanges are numbered as they start; ``next_answer`` waits for one that started after it was called, so
        # an answer to a request sent before a new scope existed cannot end the wait of that scope's first request.
        self._started = 0
        self._answered_through = 0
        self._answered = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.answers = 0    # successful lease calls, for tests and readiness
        self.failures = 0   # consecutive failed calls
        book.on_shortfall = self._wake.set

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leases-{self._settings.node_id}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def next_answer(self, within_s: float) -> None:
        """Ask now, and wait (at most ``within_s`` seconds) for the answer. Only for a scope this data plane has
        never held a grant of (its first request, or the first of a month): everything else is served locally."""
        target = self._started + 1
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s), self._answered:
                await self._answered.wait_for(lambda: self._answered_through >= target)

    async def _run(self) -> None:
        s = self._settings
        channel = control_plane_channel(s)
        stub = lgrpc.LeasesStub(channel)
        try:
            while True:
                try:
                    await self.exchange(stub)
                    self.failures = 0
                except grpc.aio.AioRpcError as e:
                    self.failures += 1
                    if self.failures in (1, 10) or self.failures % 100 == 0:
                        log.warning("lease request failed (%s): %s", e.code().name, e.details())
                    if self.failures % REOPEN_AFTER_FAILURES == 0:  # the addresses may have moved: resolve again
                        await channel.close(None)
                        channel = control_plane_channel(s)
                        stub = lgrpc.LeasesStub(channel)
                except Exception:  # top of a long-running loop: log, count, go on
                    self.failures += 1
                    log.exception("lease request failed")
                delay = self._interval if self.failures == 0 else min(self._interval * 2 ** min(self.failures, 4), 5.0)
                await self._sleep(delay)
        finally:
            await channel.close(None)

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    def request(self, now: float) -> lpb.LeaseRequest:
        """The next request: the book's asks and the limiter's demand."""
        s = self._settings
        # Exact pico amounts, and (rounded up, never under-counting) micro-dollars for an older control plane.
        asks = [lpb.BudgetAsk(scope=a.scope, period=a.period, spent_micros=_int64(micros_ceil(a.spent)),
                              reserved_micros=_int64(micros_ceil(a.reserved)), want_micros=_int64(micros_ceil(a.want)),
                              release=a.release, spent_pico=pico_text(a.spent), reserved_pico=pico_text(a.reserved),
                              want_pico=pico_text(a.want), need_pico=pico_text(a.need),
                              exceeded_refusals=a.exceeded)
                for a in self._book.asks(now, may_give_back=self.answers > 0 and self.failures == 0)]
        demand = self._limiter.demand() if self._limiter is not None else {}
        refused = self._limiter.refusals() if self._limiter is not None else {}
        rates = [lpb.RateDemand(scope=k, requests_per_s=r, tokens_per_s=t, refused=refused.get(k, 0))
                 for k, (r, t) in sorted(demand.items())]
        return lpb.LeaseRequest(node_id=s.node_id, incarnation=self.incarnation, region=s.region, budgets=asks,
                                rates=rates)

    def apply(self, response: lpb.LeaseResponse, sent_at: float) -> None:
        expires_at = sent_at + response.ttl_s
        # A grant should cover a whole lease of demand, so an outage as long as the lease fails nothing (a budget
        # with a lease of its own: that lease, see ``BudgetBook``).
        self._book.horizon_s = max(self._book.horizon_s, response.ttl_s)
        for g in response.budgets:
            self._book.apply(g.scope, g.period, limited=g.limited,
                             granted=parse_pico(g.granted_pico, g.granted_micros),
                             remaining=parse_pico(g.remaining_pico, g.remaining_micros),
                             expires_at=sent_at + g.ttl_s if g.ttl_s > 0 else expires_at,
                             fleet_spent=parse_pico(g.spent_pico, g.spent_micros), answered_at=sent_at)
        if self._limiter is not None and response.shares:
            self._limiter.set_shares({r.scope: (r.requests_fraction, r.tokens_fraction) for r in response.shares},
                                     expires_at)

    async def exchange(self, stub: lgrpc.LeasesStub) -> None:
        """One request and its answer."""
        sent_at = self._clock()
        self._started += 1
        number = self._started
        request = self.request(sent_at)
        if not request.budgets and not request.rates:
            return
        response = await stub.Lease(request, metadata=self._metadata, timeout=self._timeout)
        self.apply(response, sent_at)
        self.answers += 1
        async with self._answered:
            self._answered_through = max(self._answered_through, number)
            self._answered.notify_all()


def _int64(micros: int) -> int:
    return min(micros, 2**63 - 1)
