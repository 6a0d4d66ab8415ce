"""The alert rules (pure): when budget and rate-limit events fire, their ids, and the webhook signature."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from controlplane.alerts.events import AlertEvent, Delivery
from controlplane.alerts.rules import EXHAUSTED, REFUSING, SOFT, RefusalWatch, budget_crossings, event_id, scope_owner
from controlplane.alerts.webhooks import secret_env_name, sign
from controlplane.policy.resources import parse_resource
from tollway.budget_scopes import BudgetLimit

LIMIT = BudgetLimit(monthly_pico=1000, soft_percent=80, safe_allowance_pico=0)


@pytest.mark.parametrize(("spent", "exceeded", "expected"), [
    (0, False, ()),
    (799, False, ()),
    (800, False, (SOFT,)),
    (999, False, (SOFT,)),
    (1000, False, (SOFT, EXHAUSTED)),
    (10, True, (EXHAUSTED,)),      # refused as exhausted by a data plane (a request larger than what is left)
    (900, True, (SOFT, EXHAUSTED)),
])
def test_budget_crossings(spent: int, exceeded: bool, expected: tuple[str, ...]) -> None:
    assert budget_crossings(spent, LIMIT, exceeded) == expected


def test_a_zero_budget_is_exhausted_only_when_a_data_plane_refuses() -> None:
    zero = BudgetLimit(0, 80, 0)
    assert budget_crossings(0, zero, False) == ()
    assert budget_crossings(0, zero, True) == (EXHAUSTED,)


def test_event_ids_are_stable_and_distinct() -> None:
    assert event_id(SOFT, "2026-12", "tenant/acme") == event_id(SOFT, "2026-12", "tenant/acme")
    ids = {event_id(SOFT, "2026-12", "tenant/acme"), event_id(EXHAUSTED, "2026-12", "tenant/acme"),
           event_id(SOFT, "2027-01", "tenant/acme"), event_id(SOFT, "2026-12", "project/acme/web")}
    assert len(ids) == 4


def test_a_scope_refusing_past_the_threshold_fires_once_per_episode() -> None:
    watch = RefusalWatch(threshold_s=60.0, gap_s=15.0)
    for t in range(0, 65, 5):  # new refusals every 5 s, first seen at 1005
        watch.report("dp-a", "tenant/acme", t, 1000.0 + t)
        assert watch.due(1000.0 + t) == []
    watch.report("dp-a", "tenant/acme", 65, 1065.0)
    assert [(r.scope, r.since, r.lasted_s, r.refusals) for r in watch.due(1065.0)] == [("tenant/acme", 1005.0, 60.0,
                                                                                       65)]
    watch.report("dp-a", "tenant/acme", 70, 1070.0)
    assert watch.due(1070.0) == []  # once per episode


def test_refusal_episodes_need_new_refusals_and_restart_after_a_pause() -> None:
    watch = RefusalWatch(threshold_s=10.0, gap_s=3.0)
    for t in range(0, 12):
        watch.report("dp-a", "user/acme/bob", 5, 100.0 + t)  # the same count: no new refusals
    assert watch.due(112.0) == []
    for t in range(0, 11):
        watch.report("dp-a", "user/acme/bob", 6 + t, 200.0 + t)
    [first] = watch.due(210.0)
    assert first.lasted_s == 10.0 and first.refusals == 11  # counted from dp-a's baseline of 5
    for t in range(0, 12):  # a pause longer than the gap, then a new episode: a new event
        watch.report("dp-a", "user/acme/bob", 100 + t, 300.0 + t)
    [second] = watch.due(311.0)
    assert second.id != first.id and second.scope == first.scope


def test_two_data_planes_and_a_counter_restart_add_up() -> None:
    watch = RefusalWatch(threshold_s=2.0, gap_s=5.0)
    watch.report("dp-a", "tenant/acme", 10, 0.0)
    watch.report("dp-b", "tenant/acme", 3, 1.0)
    watch.report("dp-a", "tenant/acme", 2, 2.0)  # dp-a swept its buckets: counting restarted at 0
    [r] = watch.due(2.0)
    assert r.refusals == 15 and r.lasted_s == 2.0


@pytest.mark.parametrize(("scope", "owner"), [
    ("tenant/acme", ("acme", "")), ("project/acme/web", ("acme", "web")), ("user/acme/bob%40x", ("acme", "")),
    ("route/acme/chat", ("acme", "")), ("key/acme-key", ("acme", "")), ("key/gone", ("", "")),
])
def test_scope_owner(scope: str, owner: tuple[str, str]) -> None:
    assert scope_owner(scope, {"acme-key": "acme"}) == owner


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"s3cret", "1700000000", body) == f"sha256={expected}"
    assert secret_env_name("ops-team.eu") == "TOLLWAY_WEBHOOK_SECRET_OPS_TEAM_EU"


def test_an_event_body_is_the_same_at_every_attempt() -> None:
    event = AlertEvent("evt_1", REFUSING, 1.5, "acme", "", "tenant/acme", "", {"refusals": 3}, [Delivery("ops")])
    before = event.body()
    event.deliveries[0] = Delivery("ops", "pending", 3, 9.0, "hooks.example answered 500")
    assert event.body() == before
    assert AlertEvent.from_json(event.to_json()) == event
    assert event.state == "pending" and event.attempts == 3


def _tenant(alerts: object) -> dict[str, object]:
    return {"apiVersion": "tollway.dev/v1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"regions": ["eu"], "alerts": alerts}}


@pytest.mark.parametrize(("alerts", "field", "message"), [
    ({"webhooks": [{"name": "ops", "url": "https://user:pw@hooks.example/x"}]}, "url", "without credentials"),
    ({"webhooks": [{"name": "ops", "url": "ftp://hooks.example/x"}]}, "url", "http(s) URL"),
    ({"webhooks": [{"name": "ops", "url": "https://h/x", "secretFile": "secret.txt"}]}, "secretFile", "absolute"),
    ({"webhooks": [{"name": "ops", "url": "https://h/x", "secret": "abc"}]}, "secret", "Extra inputs"),
    ({"webhooks": [{"name": "ops", "url": "https://h/x", "events": ["budget.gone"]}]}, "events", "budget.exhausted"),
    ({"webhooks": [{"name": "ops", "url": "https://h/a"}, {"name": "ops", "url": "https://h/b"}]}, "webhooks",
     "duplicate webhook names: ops"),
])
def test_webhook_policy_is_validated(alerts: object, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_resource(_tenant(alerts))
    assert field in str(info.value) and message in str(info.value)


def test_a_valid_webhook_defaults_to_every_event() -> None:
    tenant = parse_resource(_tenant({"webhooks": [{"name": "ops", "url": "https://hooks.example/tollway"}]}))
    assert tenant.kind == "Tenant"
    assert tenant.spec.alerts is not None
    assert tenant.spec.alerts.webhooks[0].events == ["budget.soft_threshold", "budget.exhausted", "ratelimit.refusing"]
