"""The pure plan of a policy change: per region, what the data planes would receive. No event loop."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from cli.render.plan_text import render_plan
from controlplane.policy import plan
from controlplane.policy.compile import PolicySet, build_snapshots
from controlplane.policy.engine import Document, PolicyState, ResourceId, Stored
from controlplane.policy.resources import parse_resource
from controlplane.policy.snapshot_facts import NOMINAL_OUTPUT_TOKENS, NOMINAL_PROMPT_TOKENS, candidate_orders
from dataplane.core.decide import DEFAULT_EXPECTED_OUTPUT_TOKENS, order_candidates
from dataplane.core.validate import HubRequest
from dataplane.snapshot.runtime import Runtime
from tests.core.policy_docs import api_key, example_resources, model, provider, route, tenant
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

BASE = (
    provider("azure-eu", "eu"), provider("openai-us", "us"),
    model("big-eu", "azure-eu", inp="3", out="12"), model("mini-us", "openai-us", inp="0.15", out="0.60"),
    route("chat", "big-eu", "mini-us", strategy="cheapest"),
    tenant("search", "eu", "us", projects=("ranking",), budget={"monthlyUsd": "500", "softPercent": 80}),
    tenant("payments", "eu"),
    api_key("ci-bot", "search", digest="ab" * 32),
)


def state_of(*docs: dict[str, Any]) -> PolicyState:
    resources: dict[ResourceId, Stored] = {}
    for d in docs:
        s = Stored.of(parse_resource(d))
        resources[(s.resource.kind, s.resource.name)] = s
    return PolicyState(4, 40, resources)


def planned(*documents: dict[str, Any], base: tuple[dict[str, Any], ...] = BASE) -> plan.PolicyPlan:
    proposal = plan.propose(state_of(*base), [Document(f"f.yaml#{i + 1}", d) for i, d in enumerate(documents)])
    assert isinstance(proposal, plan.Proposal), proposal
    return plan.plan_of(proposal)


def region(p: plan.PolicyPlan, name: str) -> plan.RegionPlan:
    return next(r for r in p.regions if r.region == name)


def item(r: plan.RegionPlan, kind: str, name: str) -> plan.ItemChange:
    return next(c for c in r.changes if (c.kind, c.name) == (kind, name))


def fields(c: plan.ItemChange) -> dict[str, tuple[Any, Any]]:
    return {f.field: (f.old, f.new) for f in c.fields}


def test_no_change_is_an_empty_plan() -> None:
    p = planned(*BASE)
    assert not p.is_changed
    assert [(r.region, r.changes, r.current_version == r.proposed_version) for r in p.regions] == [
        ("eu", (), True), ("us", (), True)]
    assert p.resources == ()
    assert p.to_json()["changed"] is False


def test_a_cheaper_deployment_moves_to_the_front_of_a_tenants_candidates() -> None:
    p = planned(model("mini-eu", "azure-eu", inp="0.10", out="0.40"),
                route("chat", "big-eu", "mini-us", "mini-eu", strategy="cheapest"))
    eu = region(p, "eu")
    assert p.is_changed and eu.is_changed
    assert fields(item(eu, "tenant", "search"))["routes.chat"] == (
        ("mini-us", "big-eu"), ("mini-eu", "mini-us", "big-eu"))
    assert fields(item(eu, "tenant", "payments"))["routes.chat"] == (("big-eu",), ("mini-eu", "big-eu"))
    assert item(eu, "deployment", "mini-eu").op == "create"
    assert fields(item(eu, "route", "chat"))["deployments"] == (
        ("big-eu", "mini-us"), ("big-eu", "mini-us", "mini-eu"))
    assert p.resources == (("create", "Model", "mini-eu"), ("update", "Route", "chat"))
    us = region(p, "us")  # search allows eu from us too: us data planes get mini-eu as well
    assert fields(item(us, "tenant", "search"))["routes.chat"][1] == ("mini-eu", "mini-us", "big-eu")


def test_a_priority_route_keeps_its_declared_order() -> None:
    p = planned(route("chat", "big-eu", "mini-us", strategy="priority"))
    search = fields(item(region(p, "eu"), "tenant", "search"))
    assert search["routes.chat"] == (("mini-us", "big-eu"), ("big-eu", "mini-us"))
    assert fields(item(region(p, "eu"), "route", "chat"))["strategy"] == ("cheapest", "priority")


def test_a_tenant_losing_a_region_shows_its_residency_change() -> None:
    p = planned(tenant("search", "eu", projects=("ranking",), budget={"monthlyUsd": "500", "softPercent": 80}))
    eu = region(p, "eu")
    search = fields(item(eu, "tenant", "search"))
    assert search["regions"] == (("eu", "us"), ("eu",))
    assert search["providers"] == (("azure-eu (eu)", "openai-us (us)"), ("azure-eu (eu)",))
    assert search["routes.chat"] == (("mini-us", "big-eu"), ("big-eu",))
    assert item(eu, "provider", "openai-us").op == "delete"  # no eu tenant may reach the us provider any more
    assert item(eu, "deployment", "mini-us").op == "delete"
    us = region(p, "us")
    assert item(us, "tenant", "search").op == "delete"
    assert item(us, "key", "ci-bot").op == "delete"  # its tenant is gone from us: so is the key


def test_a_price_change() -> None:
    p = planned(model("big-eu", "azure-eu", inp="2.50", out="12"))
    changed = fields(item(region(p, "eu"), "deployment", "big-eu"))
    assert changed["prices.input"] == (3_000_000, 2_500_000)
    assert changed["prices.cacheWrite"] == (3_000_000, 2_500_000)  # defaults to the input price
    assert "prices.output" not in changed


def test_a_budget_change() -> None:
    p = planned(tenant("search", "eu", "us", projects=("ranking",),
                       budget={"monthlyUsd": "750", "softPercent": 90, "leaseSeconds": 300}))
    for name in ("eu", "us"):
        changed = fields(item(region(p, name), "tenant", "search"))
        assert changed == {"budget.monthlyMicros": (500_000_000, 750_000_000), "budget.softPercent": (80, 90),
                           "budget.leaseSeconds": (None, 300)}


def test_keys_are_named_never_shown_by_their_hash() -> None:
    rotated = api_key("ci-bot", "search", digest="cd" * 32, rateLimits={"requestsPerMinute": 60},
                      previousSecrets=[{"hash": "sha256:" + "ab" * 32, "expiresAt": 2_000_000_000}])
    p = planned(rotated, api_key("new-bot", "payments", digest="ef" * 32))
    eu = region(p, "eu")
    assert fields(item(eu, "key", "ci-bot")) == {"rateLimit.requestsPerMinute": (None, 60),
                                                 "previousSecretsUntil": (None, ("2033-05-18T03:33:20Z",)),
                                                 "secret": ("previous", "replaced")}
    assert item(eu, "key", "new-bot").op == "create"
    text = json.dumps(p.to_json()) + render_plan(p.to_json())
    assert "ab" * 32 not in text and "cd" * 32 not in text and "ef" * 32 not in text and "tw_..." not in text


def test_validation_problems_come_back_as_values_like_an_apply() -> None:
    broken = route("chat", "big-eu", "gone", strategy="cheapest")
    problems = plan.propose(state_of(*BASE), [Document("routes.yaml#2", broken)])
    assert isinstance(problems, list)
    assert [(p.source, p.kind, p.name, p.field) for p in problems] == [
        ("routes.yaml#2", "Route", "chat", "spec.models[1]")]


def test_regions_data_planes_run_in_are_planned_too() -> None:
    proposal = plan.propose(state_of(*BASE), [], regions=["ap"])
    assert isinstance(proposal, plan.Proposal)
    assert sorted(proposal.current) == sorted(proposal.proposed) == ["ap", "eu", "us"]


def test_the_text_shows_signs_and_old_to_new() -> None:
    p = planned(model("big-eu", "azure-eu", inp="2.50", out="12"),
                tenant("search", "eu", "us", projects=("ranking",),
                       budget={"monthlyUsd": "1000.50", "softPercent": 80}),
                api_key("new-bot", "payments", digest="ef" * 32))
    lines = render_plan(p.to_json()).splitlines()
    assert lines[0].startswith("region eu: snapshot ") and " → " in lines[0]
    assert "  ~ tenant search" in lines
    assert "      ~ budget.monthlyMicros: $500 → $1,000.5" in lines
    assert "  + key new-bot (tenant payments)" in lines
    assert "      ~ prices.input: $3/1M tokens → $2.5/1M tokens" in lines
    assert lines[-1] == "Plan: 2 of 2 regions change: 1 to add, 4 to change, 0 to remove."
    clean = render_plan(planned().to_json()).splitlines()
    assert clean[0].startswith("region eu: no changes (snapshot ")
    assert clean[-1] == "Plan: 0 of 2 regions change: 0 to add, 0 to change, 0 to remove."


def test_the_candidate_order_is_the_data_planes() -> None:
    """``snapshot_facts`` mirrors the data plane's ordering (it may not import it): the same order, for every
    tenant and route of the example policy in every region, as ``Runtime`` and ``order_candidates`` give."""
    assert NOMINAL_OUTPUT_TOKENS == DEFAULT_EXPECTED_OUTPUT_TOKENS
    request = HubRequest(payload={}, model="", stream=False, include_usage=False, max_tokens=None,
                         estimated_prompt_tokens=NOMINAL_PROMPT_TOKENS, needs=frozenset())
    others = [parse_resource(d) for d in (
        *BASE[:4], model("mid-eu", "azure-eu", inp="1", out="1"), tenant("t", "eu", "us"),
        route("w", "big-eu", "mini-us", strategy="weighted", weights=[3, 1]),
        route("l", "mini-us", "mid-eu", "big-eu", strategy="latency"),
        route("c", "big-eu", "mid-eu", "mini-us", strategy="cheapest"))]
    compared = 0
    for policy in (PolicySet.of(example_resources()), PolicySet.of(others)):
        snapshots = build_snapshots(policy)
        assert isinstance(snapshots, dict)
        compared += check_orders(snapshots.values(), request)
    assert compared > 20


def check_orders(snapshots: Iterable[pb.Snapshot], request: HubRequest) -> int:
    compared = 0
    for snap in snapshots:
        runtime = Runtime.from_snapshot(snap, environ={})
        ours = candidate_orders(snap)
        assert set(ours) == set(runtime.tenant_candidates)
        for (tenant_name, route_name), candidates in runtime.tenant_candidates.items():
            route_ = runtime.routes[route_name]
            theirs = order_candidates(route_, [(c.deployment, c.weight) for c in candidates], request, pick=0.0)
            assert ours[(tenant_name, route_name)] == tuple(d.name for d in theirs), (tenant_name, route_name)
            compared += 1
    return compared
