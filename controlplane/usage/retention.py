"""Usage retention: delete usage events older than each tenant's ``spec.logging.retentionDays``.

``cutoffs`` is the pure part (policy + clock -> per-tenant cutoff); ``RetentionTask`` is the background task the
``ControlPlane`` owns: it runs once at start and then every ``interval`` seconds. Tenants that are no longer in
the policy keep the default retention (``LoggingSpec``'s, 90 days), so deleting a tenant does not silently
erase its history at once, nor keep it forever.

A failing run (store or database unavailable) is logged and counted, and retried at the next interval: the
task never dies of it. The clock is injectable so tests can move time instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controlplane.policy.compile import PolicySet
from controlplane.policy.resources import LoggingSpec
from controlplane.usage.db import UsageDB
from tollway.tasks import cancel

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
DEFAULT_RETENTION_DAYS = LoggingSpec().retention_days
DEFAULT_INTERVAL_SECONDS = 3600.0


def cutoffs(policy: PolicySet, now_s: float) -> dict[str, int]:
    """Per tenant: unix ms before which its usage events are deleted."""
    now_ms = int(now_s * 1000)
    return {name: now_ms - t.spec.logging.retention_days * DAY_MS for name, t in policy.tenants.items()}


def default_cutoff(now_s: float, days: int = DEFAULT_RETENTION_DAYS) -> int:
    return int(now_s * 1000) - days * DAY_MS


@dataclass
class RetentionStats:
    """Written only by the task; read by metrics. ``last_run`` is unix seconds (0: never)."""

    runs: int = 0
    failures: int = 0
    deleted: int = 0
    last_run: float = 0.0


class RetentionTask:
    """Owned by ``ControlPlane``: ``start()`` inside the running loop, ``await stop()`` at exit."""

    def __init__(self, db: UsageDB, policy: Callable[[], Awaitable[PolicySet]], *,
                 interval: float = DEFAULT_INTERVAL_SECONDS, clock: Callable[[], float] = time.time,
                 default_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._db = db
        self._policy = policy
        self._interval = interval
        self._clock = clock
        self._default_days = default_days
        self._task: asyncio.Task[None] | None = None
        self.stats = RetentionStats()

    async def run_once(self, fence: int = 0) -> int:
        """Apply retention now; returns how many events were deleted. Errors propagate (the loop counts them).
        ``fence``: the duty's fencing token with several replicas (``Duty.token``); 0 on one machine."""
        policy = await self._policy()
        now = self._clock()
        deleted = await self._db.delete_older_than(cutoffs(policy, now), default_cutoff(now, self._default_days),
                                                   fence=fence)
        self.stats.runs += 1
        self.stats.deleted += deleted
        self.stats.last_run = now
        if deleted:
            log.info("retention: deleted %d usage events past their tenant's retention", deleted)
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the top of a long-running loop: log, count, try again next interval
                self.stats.failures += 1
                log.warning("retention run failed (retrying in %.0f s): %s", self._interval, e)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-retention")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
