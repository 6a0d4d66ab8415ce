"""``AlertDuty``: records alert events in the store and delivers them to webhooks, at least once.

Fed, on the control plane's event loop and without awaiting, by the ledger (``budget_observed`` after a usage
batch settles) and the lease service (``budget_observed`` per budget ask, with the data plane's count of requests
it refused as exhausted; ``rate_refusals`` per rate-limit scope). The rules (``controlplane.alerts.rules``) decide
what fires; the duty's loop, every ``interval_s``:

1. records each new event with a create-if-absent transaction on its id (an event fires once however often it is
   observed, and a second evaluator would write nothing), with one pending delivery per webhook of the event's
   tenant that subscribes to its kind;
2. starts the deliveries that are due, each in a task of its own (a slow webhook holds back no other), and writes
   each attempt's outcome to the event (compare-and-swap): delivered on a 2xx, else retried after
   ``retry_base_s * 2^(attempts-1)`` (at most ``retry_max_s``) until ``max_attempts``, then failed.

At start, and until it has succeeded once, it lists the stored events, so pending deliveries resume after a
restart with their attempt counts (a delivery that was made but not yet recorded is made again: receivers
deduplicate on the event id). Every hour it deletes events older than ``RETENTION_S`` that are no longer
pending. The refusal episodes of rate-limit scopes live in memory: a restart starts them afresh.

With several replicas (``duty``: the election of ``controlplane.ha``), every replica records what it observes
(recording is create-if-absent, so two replicas observing one crossing write one event), but only the duty
holder delivers and prunes: it relists the stored events every ``RELIST_S`` (so it delivers what the others
recorded, and resumes what a dead holder left pending), and its every delivery outcome and deletion is fenced by
the election, so a holder that lost the duty writes nothing.

Errors: a store failure leaves the event to record (or the attempt's outcome unwritten, so the attempt is made
again); the loop logs and goes on. No secret is logged or stored: deliveries name the webhook, not its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from controlplane.alerts.events import ALERT_EVENTS, AlertEvent, Delivery, alert_key
from controlplane.alerts.rules import REFUSING, RefusalWatch, Refusing, budget_crossings, event_id, scope_owner
from controlplane.alerts.webhooks import post, read_secret
from controlplane.ha.election import Duty
from controlplane.policy.compile import PolicySet
from controlplane.policy.resources import AlertKind, Webhook
from controlplane.store.base import Compare, Store, StoreError
from tollway.budget_scopes import BudgetLimit
from tollway.money import usd
from tollway.tasks import cancel

log = logging.getLogger(__name__)
_WRITE_ATTEMPTS = 20
RETENTION_S = 400 * 86_400  # events older than this (a year and a month), once no longer pending, are deleted
PRUNE_INTERVAL_S = 3600.0
_DELETES_PER_TXN = 100  # under etcd's default 128 operations per transaction
RELIST_S = 2.0  # with several replicas: how often the duty holder picks up events the others recorded


@dataclass(frozen=True, slots=True)
class _Candidate:
    id: str
    kind: AlertKind
    scope: str
    period: str
    details: dict[str, Any]


@dataclass(slots=True)
class AlertStats:
    """Counts since start, for the control plane's metrics."""

    recorded: dict[str, int] = field(default_factory=dict)   # kind -> events recorded here
    attempts: dict[str, int] = field(default_factory=dict)   # delivered | failed | gave_up -> attempts


class AlertDuty:
    """Owned by ``ControlPlane``: ``start`` once, ``await stop()`` once. The feed methods are cheap and never await."""

    def __init__(self, store: Store, policy: Callable[[], Awaitable[PolicySet]], *,
                 refusal_threshold_s: float = 60.0, interval_s: float = 1.0, retry_base_s: float = 1.0,
                 retry_max_s: float = 300.0, max_attempts: int = 10, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time, environ: Mapping[str, str] | None = None,
                 duty: Duty | None = None) -> None:
        self._store = store
        self._duty = duty
        self._next_relist = 0.0
        self._finished = 0  # deliveries finished: a relist that overlapped one keeps the events it knew
        self._policy = policy
        self._interval = interval_s
        self._retry_base = retry_base_s
        self._retry_max = retry_max_s
        self._max_attempts = max_attempts
        self._timeout = timeout_s
        self._clock = clock
        self._environ = environ if environ is not None else os.environ
        self.refusals = RefusalWatch(refusal_threshold_s)
        self.stats = AlertStats()
        self._known: set[str] = set()              # ids recorded, or queued to be
        self._new: dict[str, _Candidate] = {}      # to record
        self._pending: dict[str, AlertEvent] = {}  # recorded, with deliveries still pending
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._resumed = False
        self._next_prune = 0.0
        self._ticking = asyncio.Lock()  # one tick at a time (the loop's, or a caller's)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- feeds ------------------------------------------------------------------------------------------------

    def budget_observed(self, period: str, scope: str, spent: int, limit: BudgetLimit, exceeded: bool) -> None:
        """A budget scope's settled spend (and whether a data plane refused a request of it as exhausted)."""
        for kind in budget_crossings(spent, limit, exceeded):
            eid = event_id(kind, period, scope)
            if eid in self._known:
                continue
            self._known.add(eid)
            self._new[eid] = _Candidate(eid, kind, scope, period, {
                "spentUsd": usd(spent), "limitUsd": usd(limit.monthly_pico), "softPercent": limit.soft_percent})
            self._wake.set()

    def rate_refusals(self, node: str, scope: str, count: int, now: float) -> None:
        """A data plane's cumulative count of requests refused on a rate-limit scope."""
        self.refusals.report(node, scope, count, now)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="alerts")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        for task in list(self._inflight.values()):
            await cancel(task)
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreError as e:  # the store is away: what is to record or resume waits for it
                log.warning("alert duty: store unavailable (%s); retrying", e)
            except Exception:  # top of a long-running loop: log and go on
                log.exception("alert duty tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> None:
        """Record what is new, start the deliveries that are due. The loop calls it every ``interval_s``."""
        async with self._ticking:
            await self._tick(self._clock())

    async def _tick(self, now: float) -> None:
        held = self._duty is None or self._duty.is_held()
        if held and self._duty is not None and now >= self._next_relist:
            self._next_relist, self._resumed = now + RELIST_S, False
        if held and not self._resumed:
            await self._resume()
        if held and now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL_S
            await self._prune(now)
        for r in self.refusals.due(now):
            self._refusing(r)
        if self._new:
            policy = await self._policy()
            for c in list(self._new.values()):
                try:
                    await self._record(c, policy, now)
                except StoreError as e:
                    log.warning("alert %s not recorded yet (store: %s); retrying", c.id, e)
                    break
        if not held:
            return  # the duty holder delivers what this replica recorded
        for event in list(self._pending.values()):
            for d in event.deliveries:
                key = (event.id, d.webhook)
                if d.state == "pending" and d.next_at <= now and key not in self._inflight:
                    self._inflight[key] = asyncio.create_task(self._deliver(event, d.webhook), name=f"alert-{key}")

    async def _resume(self) -> None:
        finished = self._finished
        listing = await self._store.list(ALERT_EVENTS)
        for kv in listing.items:
            try:
                event = AlertEvent.from_json(kv.value)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring a malformed alert event at %s", kv.key)
                continue
            self._known.add(event.id)
            if any(key[0] == event.id for key in self._inflight) or (
                    finished != self._finished and event.id in self._pending):
                continue  # this replica's own delivery is writing it: ours is the newer copy
            if event.state == "pending":
                self._pending[event.id] = event
            else:
                self._pending.pop(event.id, None)
        self._resumed = True

    async def _prune(self, now: float) -> None:
        old = [e for e in await self.events() if e.time < now - RETENTION_S and e.state != "pending"]
        for i in range(0, len(old), _DELETES_PER_TXN):
            fence = self._duty.fence() if self._duty is not None else []
            if not (await self._store.txn(fence, deletes=[alert_key(e.id) for e in old[i:i + _DELETES_PER_TXN]])
                    ).succeeded:
                return  # the duty moved to another replica: it prunes
        if old:
            log.info("deleted %d alert events older than %d days", len(old), RETENTION_S // 86_400)

    def _refusing(self, r: Refusing) -> None:
        if r.id in self._known:
            return
        self._known.add(r.id)
        self._new[r.id] = _Candidate(r.id, REFUSING, r.scope, "", {
            "refusingSince": r.since, "refusingForS": round(r.lasted_s, 1), "refusals": r.refusals})

    # --- recording ----------------------------------------------------------------------------------------------

    async def _record(self, c: _Candidate, policy: PolicySet, now: float) -> None:
        tenant, project = scope_owner(c.scope, {k: key.spec.tenant for k, key in policy.keys.items()})
        hooks = [w.name for w in _webhooks(policy, tenant) if c.kind in w.events]
        event = AlertEvent(c.id, c.kind, now, tenant, project, c.scope, c.period, c.details,
                           [Delivery(name, next_at=now) for name in hooks])
        result = await self._store.txn([Compare(alert_key(c.id), 0)], [(alert_key(c.id), event.to_json())])
        self._new.pop(c.id, None)
        if not result.succeeded:
            return  # recorded before (by an earlier process): its deliveries resumed from the listing
        self.stats.recorded[c.kind] = self.stats.recorded.get(c.kind, 0) + 1
        log.warning("alert %s: %s on %s%s (%d webhook%s)", c.id, c.kind, c.scope, f" in {c.period}" if c.period else "",
                    len(hooks), "" if len(hooks) == 1 else "s")
        if event.state == "pending":
            self._pending[c.id] = event

    # --- delivery -----------------------------------------------------------------------------------------------

    async def _deliver(self, event: AlertEvent, webhook: str) -> None:
        try:
            policy = await self._policy()
            hook = next((w for w in _webhooks(policy, event.tenant) if w.name == webhook), None)
            delivery = next(d for d in event.deliveries if d.webhook == webhook)
            if hook is None:
                error: str | None = f"webhook {webhook!r} is no longer in the policy of tenant {event.tenant!r}"
                give_up = True
            else:
                secret = read_secret(hook, self._environ)
                assert self._session is not None
                error = secret if isinstance(secret, str) else await post(
                    self._session, hook, secret, event.id, event.kind, event.body(), self._clock(), self._timeout)
                give_up = False
            now = self._clock()
            outcome = _attempted(delivery, error, now, give_up, self._max_attempts,
                                 min(self._retry_base * 2 ** delivery.attempts, self._retry_max))
            await self._write_delivery(event, outcome)
            result = "delivered" if error is None else ("gave_up" if outcome.state == "failed" else "failed")
            self.stats.attempts[result] = self.stats.attempts.get(result, 0) + 1
            if error is not None:
                log.warning("alert %s: delivery to webhook %r failed (attempt %d%s): %s", event.id, webhook,
                            outcome.attempts, ", giving up" if outcome.state == "failed" else "", error)
            if event.state != "pending":
                self._pending.pop(event.id, None)
        except StoreError as e:
            log.warning("alert %s: outcome of the delivery to %r not recorded (store: %s); it will be retried",
                        event.id, webhook, e)
        except Exception:  # the top of a delivery task: log and count; the next tick tries again
            log.exception("alert %s: delivery to %r failed", event.id, webhook)
        finally:
            self._finished += 1
            self._inflight.pop((event.id, webhook), None)

    async def _write_delivery(self, event: AlertEvent, outcome: Delivery) -> None:
        """Replace the delivery's record in the stored event (compare-and-swap) and in ``event``."""
        key = alert_key(event.id)
        for _ in range(_WRITE_ATTEMPTS):
            kv = await self._store.get(key)
            stored = AlertEvent.from_json(kv.value) if kv is not None else event
            stored.deliveries = [outcome if d.webhook == outcome.webhook else d for d in stored.deliveries]
            fence = self._duty.fence() if self._duty is not None else []
            written = await self._store.txn([Compare(key, kv.mod_revision if kv else 0), *fence],
                                            [(key, stored.to_json())])
            if not written.succeeded and self._duty is not None and not self._duty.is_held():
                raise StoreError("alert event: this replica no longer holds the alert duty")
            if written.succeeded:
                event.deliveries = [outcome if d.webhook == outcome.webhook else d for d in event.deliveries]
                return
        raise StoreError("alert event: too many concurrent updates")

    # --- reading ------------------------------------------------------------------------------------------------

    async def events(self) -> list[AlertEvent]:
        """Every stored event, newest first."""
        out = []
        for kv in (await self._store.list(ALERT_EVENTS)).items:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out.append(AlertEvent.from_json(kv.value))
        return sorted(out, key=lambda e: (-e.time, e.id))


def _webhooks(policy: PolicySet, tenant: str) -> list[Webhook]:
    t = policy.tenants.get(tenant)
    return list(t.spec.alerts.webhooks) if t is not None and t.spec.alerts is not None else []


def _attempted(d: Delivery, error: str | None, now: float, give_up: bool, max_attempts: int,
               backoff_s: float) -> Delivery:
    """The delivery after one attempt that ended with ``error`` (None: delivered)."""
    attempts = d.attempts + 1
    if error is None:
        return Delivery(d.webhook, "delivered", attempts, 0.0, "", now)
    if give_up or attempts >= max_attempts:
        return Delivery(d.webhook, "failed", attempts, 0.0, error)
    return Delivery(d.webhook, "pending", attempts, now + backoff_s, error)
