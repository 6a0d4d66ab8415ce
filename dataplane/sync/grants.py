"""Budget grants that survive a restart: the lease incarnation and each grant's checkout, on disk.

``GrantFile`` holds, in ``<state_dir>/grants.json``, the incarnation this data plane leases under and, per
allowance, the grant as last answered and how much of it is *checked out* (``BudgetBook`` spends only that). The
``GrantPersister`` task writes the next checkout chunks before they may be spent (crash-safe:
``tollway.durable``), off the request path and never once per request, and re-writes after a lease answer that
changed what a restart would restore (``restores_differently``): a grant's amount, an allowance added or gone,
an expiry brought forward, or one pushed so far on that the one on disk has less than half the grant's
remaining life. A renewal that only pushes expiries one lease interval on (every second, for grants of
minutes) is not written each time: a restart then serves a grant until an expiry at most half its life early,
never later than the control plane granted.
A data plane restarted while the control plane is away restores both (``DataPlane.start``): same incarnation,
so the control plane's ledger sees the same holder; everything checked out counted as spent (after a clean stop
the last write checks out only what was spent, so a deploy costs nothing; a crash costs at most two chunks); the
rest of each unexpired grant served. Owned by ``DataPlane``; the task is started and stopped by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from dataplane.core.limits.budget import BudgetBook, SavedAllowance
from tollway.durable import write_atomically
from tollway.tasks import cancel

log = logging.getLogger(__name__)
INTERVAL_S = 0.25  # how soon a checkout running low is topped up


class GrantFile:
    """The file's contents: read once at start (``load``), written by the persister."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # One write at a time: a write whose task was cancelled still runs in its thread while the last is made.
        self._writing = threading.Lock()

    def load(self) -> tuple[str, list[SavedAllowance]]:
        """The saved incarnation (a new one when there is none or the file is unreadable) and allowances."""
        try:
            data: Any = orjson.loads(self.path.read_bytes())
            incarnation = str(data["incarnation"])
            saved = [SavedAllowance(str(a["scope"]), str(a["period"]), int(a["granted"]), float(a["expires_at"]),
                                    int(a["checked_out"])) for a in data["allowances"]]
        except FileNotFoundError:
            return secrets.token_hex(8), []
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a broken file: start afresh, say so
            log.warning("ignoring unreadable grant file %s: %s", self.path, exc)
            return secrets.token_hex(8), []
        return incarnation, saved

    def save(self, incarnation: str, saved: list[SavedAllowance]) -> None:
        # Amounts are pico-dollars as decimal strings would be safer past 64 bits; one process's grant of one
        # scope in one month stays far below $9.2M, and orjson refuses (never truncates) a larger integer.
        with self._writing:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, orjson.dumps({"incarnation": incarnation,
                                                      "allowances": [asdict(s) for s in saved]}))


class GrantPersister:
    """Writes checkouts ahead of spending. Task-safe on one loop; ``wake`` may be called from the request path."""

    def __init__(self, book: BudgetBook, file: GrantFile, incarnation: str) -> None:
        self._book = book
        self._file = file
        self._incarnation = incarnation
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._answers = -1  # the book's answer count at the last write (or the last answer found not to matter)
        self._last: list[SavedAllowance] | None = None  # what the last write recorded
        self._written = asyncio.Condition()
        # Writes are numbered as they plan; ``next_write`` waits for one planned after it was called, so a write
        # already under way (planned before the grant it waits for was applied) cannot end its wait.
        self._planned = 0
        self._written_through = 0
        self.writes = 0
        book.on_checkout = self._wake.set

    def wake(self) -> None:
        self._wake.set()

    async def next_write(self, within_s: float) -> None:
        """Wait (at most ``within_s``) until a checkout that is due now is on disk and spendable."""
        if self._book.plan_checkout(time.time()) is None:
            return
        target = self._planned + 1
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s), self._written:
                await self._written.wait_for(lambda: self._written_through >= target)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grant-persister")

    async def stop(self) -> None:
        """Stop writing; then record what was really spent. The data plane stops this last, once its HTTP server
        has drained and every request has settled."""
        await cancel(self._task)
        self._task = None
        try:
            await asyncio.to_thread(self._file.save, self._incarnation, self._book.spent_so_far())
        except OSError as exc:  # the checkouts on disk stay: a restart counts them all as spent, which is safe
            log.error("could not write the grant file %s: %s", self._file.path, exc)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                answers = self._book.answers
                force = answers != self._answers and restores_differently(self._last, self._book.saved(), time.time())
                if not force:
                    self._answers = answers  # (an answer that changed nothing a restart would restore)
                await self.persist(force=force)
            except OSError as exc:  # top of a long-running loop: spending stays within what is on disk
                log.error("could not write the grant file %s: %s", self._file.path, exc)

    async def persist(self, force: bool) -> None:
        """Write the next checkout if one is due (or, ``force``, the current state), then make it spendable."""
        answers = self._book.answers
        plan = self._book.plan_checkout(time.time())
        if plan is None and not force:
            return
        self._answers = answers
        self._planned += 1
        number = self._planned
        saved = plan if plan is not None else self._book.saved()
        await asyncio.to_thread(self._file.save, self._incarnation, saved)
        self._last = saved
        self._book.commit_checkout(saved)
        async with self._written:
            self.writes += 1
            self._written_through = max(self._written_through, number)
            self._written.notify_all()


def restores_differently(written: list[SavedAllowance] | None, now: list[SavedAllowance], at: float) -> bool:
    """Whether a restart from ``written`` (what the grant file holds) would restore less faithfully than from
    ``now`` than it may (pure): an allowance added or gone, a grant or checkout of another amount, an expiry
    brought forward, or one on disk with less than half the remaining life of the current one (``at``: now, unix
    seconds)."""
    if written is None or len(written) != len(now):
        return True
    on_disk = {(s.scope, s.period): s for s in written}
    for s in now:
        old = on_disk.get((s.scope, s.period))
        if old is None or old.granted != s.granted or old.checked_out != s.checked_out:
            return True
        if s.expires_at < old.expires_at:  # shortened: a restart must not serve it past its new end
            return True
        if old.expires_at - at < (s.expires_at - at) / 2:
            return True
    return False
