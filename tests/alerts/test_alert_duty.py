"""``AlertDuty`` on a real store, against a real webhook receiver on loopback, with the clock in the test's hands:
what an operator sees in ``GET /admin/v1/alerts`` when a secret is missing, a receiver keeps failing, a webhook
leaves the policy, or events grow old."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.alerts.duty import RETENTION_S, AlertDuty
from controlplane.alerts.events import ALERT_EVENTS
from controlplane.policy.compile import PolicySet
from controlplane.policy.resources import parse_resource
from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.alerts.receiver import Receiver, webhook_receiver
from tests.core.policy_docs import doc
from tollway.budget_scopes import BudgetLimit

SECRET = "whsec-duty-0a1b2c3d4e5f"
LIMIT = BudgetLimit(monthly_pico=10**12, soft_percent=80, safe_allowance_pico=0)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # near the real time: the receiver refuses stale timestamps

    def __call__(self) -> float:
        return self.now


def policy(receiver: Receiver, *hooks: str) -> PolicySet:
    webhooks = [{"name": h, "url": f"{receiver.url}/{h}"} for h in hooks]
    tenant = doc("Tenant", "acme", regions=["eu"], **({"alerts": {"webhooks": webhooks}} if hooks else {}))
    return PolicySet.of([parse_resource(tenant)])


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        yield store
    finally:
        await store.close()


async def settle(duty: AlertDuty) -> None:
    """One tick, then every delivery it started."""
    await duty.tick()
    while duty._inflight:  # the tasks the tick started
        await asyncio.sleep(0.01)


async def test_missing_secret_then_repeated_failures_end_in_failed(
        embedded: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    async with webhook_receiver({"ops": SECRET.encode()}) as receiver:
        current = policy(receiver, "ops")

        async def get_policy() -> PolicySet:
            return current

        duty = AlertDuty(embedded, get_policy, retry_base_s=1.0, max_attempts=3, clock=clock, environ={})
        duty.start()
        try:
            duty.budget_observed("2027-01", "tenant/acme", 9 * 10**11, LIMIT, False)
            await settle(duty)
            [event] = await duty.events()
            [d] = event.deliveries
            assert (event.kind, event.state, d.attempts) == ("budget.soft_threshold", "pending", 1)
            assert d.last_error == "no HMAC secret for webhook 'ops': set TOLLWAY_WEBHOOK_SECRET_OPS or secretFile"
            assert receiver.received == []

            # Observed again (every lease ask does): the same event, nothing new.
            duty.budget_observed("2027-01", "tenant/acme", 95 * 10**10, LIMIT, False)
            duty._environ = {"TOLLWAY_WEBHOOK_SECRET_OPS": SECRET}  # as a restart with the variable set would
            receiver.fail_all = True
            await settle(duty)  # not due yet: the retry waits 1 s
            assert receiver.received == []
            clock.now += 1.0
            await settle(duty)
            clock.now += 2.0
            await settle(duty)
            [event] = await duty.events()
            assert (event.state, event.attempts) == ("failed", 3)
            assert event.deliveries[0].last_error.endswith("answered 500")
            assert [r.answered for r in receiver.received] == [500, 500]
            assert receiver.bad_signatures == 0
            clock.now += 60.0
            await settle(duty)  # failed is final
            assert len(receiver.received) == 2
            assert duty.stats.attempts == {"failed": 2, "gave_up": 1}
        finally:
            await duty.stop()


async def test_a_webhook_removed_from_policy_fails_its_delivery_and_old_events_are_pruned(embedded: Store) -> None:
    clock = Clock()
    async with webhook_receiver({"ops": SECRET.encode()}) as receiver:
        policies = [policy(receiver, "ops")]

        async def get_policy() -> PolicySet:
            return policies[-1]

        duty = AlertDuty(embedded, get_policy, clock=clock, environ={"TOLLWAY_WEBHOOK_SECRET_OPS": SECRET})
        duty.start()
        try:
            receiver.fail_all = True
            duty.budget_observed("2027-01", "project/acme/web", 10**12, LIMIT, False)
            await settle(duty)
            assert {(r.kind, r.answered) for r in receiver.received} == {("budget.soft_threshold", 500),
                                                                         ("budget.exhausted", 500)}
            policies.append(policy(receiver))  # the webhook is gone before the retry
            clock.now += 1.0
            await settle(duty)
            assert len(receiver.received) == 2
            events = {e.kind: e for e in await duty.events()}
            assert set(events) == {"budget.soft_threshold", "budget.exhausted"}
            for e in events.values():
                assert (e.tenant, e.project, e.state) == ("acme", "web", "failed")
                assert "no longer in the policy" in e.deliveries[0].last_error
            duty.budget_observed("2027-01", "tenant/acme", 10**12, LIMIT, True)  # no webhook subscribes now
            await settle(duty)
            assert {e.state for e in await duty.events() if e.scope == "tenant/acme"} == {"none"}

            clock.now += RETENTION_S + 3600
            await settle(duty)
            assert not (await embedded.list(ALERT_EVENTS)).items
        finally:
            await duty.stop()


async def test_a_restarted_duty_resumes_pending_deliveries(embedded: Store) -> None:
    clock = Clock()
    async with webhook_receiver({"ops": SECRET.encode()}) as receiver:
        current = policy(receiver, "ops")

        async def get_policy() -> PolicySet:
            return current

        environ = {"TOLLWAY_WEBHOOK_SECRET_OPS": SECRET}
        first = AlertDuty(embedded, get_policy, clock=clock, environ=environ)
        first.start()
        try:
            first.rate_refusals("dp-a", "route/acme/chat", 1, clock.now)
            for _ in range(60):
                clock.now += 1.0
                first.rate_refusals("dp-a", "route/acme/chat", int(clock.now), clock.now)
            await settle(first)
        finally:
            await first.stop()
        [event] = await first.events()
        assert (event.kind, event.scope, event.state, event.attempts) == ("ratelimit.refusing", "route/acme/chat",
                                                                         "pending", 1)
        assert event.details["refusingForS"] == 60.0

        second = AlertDuty(embedded, get_policy, clock=clock, environ=environ)
        second.start()
        try:
            clock.now += 1.0
            await settle(second)
            [event] = await second.events()
            assert (event.state, event.attempts) == ("delivered", 2)
        finally:
            await second.stop()
        assert [r.event_id for r in receiver.received] == [event.id, event.id]
