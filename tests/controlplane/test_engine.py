"""The pure policy engine: planning applies, deletes and restores; problems; history; diffs. No event loop."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.policy import engine
from controlplane.policy.engine import Document, PolicyState, Stored
from controlplane.policy.resources import parse_resource
from tests.core.policy_docs import api_key, model, provider, route, tenant

pytestmark = pytest.mark.pure


def state_of(*docs: dict[str, Any], generation: int = 1) -> PolicyState:
    resources: dict[engine.ResourceId, Stored] = {}
    for d in docs:
        s = Stored.of(parse_resource(d))
        resources[(s.resource.kind, s.resource.name)] = s
    return PolicyState(generation, 10 * generation, resources)


BASE = (provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu", projects=("web",)), api_key("k", "t"))


def docs(*bodies: object) -> list[Document]:
    return [Document(f"f.yaml#{i}", b) for i, b in enumerate(bodies)]


def ops(plan: engine.ApplyPlan) -> list[tuple[str, str, str]]:
    return [(c.op, c.kind, c.name) for c in plan.changes]


@pytest.mark.parametrize(("documents", "expected"), [
    ([], []),
    ([provider("p")], [("unchanged", "Provider", "p")]),
    ([provider("p2")], [("create", "Provider", "p2")]),
    ([provider("p", base_url="http://127.0.0.1:2/v1")], [("update", "Provider", "p")]),
    ([tenant("t", "eu", projects=("web",)), route("r2", "m")],
     [("unchanged", "Tenant", "t"), ("create", "Route", "r2")]),
    # A new key and the tenant it needs, in one apply, in any order.
    ([api_key("k2", "t2"), tenant("t2", "us")], [("create", "ApiKey", "k2"), ("create", "Tenant", "t2")]),
])
def test_plan_apply_ops(documents: list[dict[str, Any]], expected: list[tuple[str, str, str]]) -> None:
    plan = engine.plan_apply(state_of(*BASE), docs(*documents))
    assert plan.problems == ()
    assert ops(plan) == expected
    assert plan.is_noop == all(op == "unchanged" for op, _, _ in expected)


def test_defaults_spelled_out_are_unchanged() -> None:
    """A document that differs from the stored one only by writing defaults is not a change."""
    explicit = route("r", "m", strategy="cheapest", weights=[])
    plan = engine.plan_apply(state_of(*BASE), docs(explicit))
    assert ops(plan) == [("unchanged", "Route", "r")]
    # and the engine remembers that document, so the next identical apply skips validation
    learned = plan.changes[0].stored
    assert learned is not None and learned.matches(explicit)


BAD_PRICE = model("m2", "p")
BAD_PRICE["spec"]["pricing"]["inputPerMillion"] = "cheap"
HUGE_PRICE = model("m2", "p", inp="1e999999999")  # overflowed the decimal context: a 500 (tests/edge/test_fuzz_admin)
TINY_PRICE = model("m2", "p", inp="1e-999999999")  # underflowed to 0 and passed the six-decimals check


@pytest.mark.parametrize(("documents", "expected"), [
    ([BAD_PRICE], [("f.yaml#0", "Model", "m2", "spec.pricing.inputPerMillion")]),
    ([HUGE_PRICE], [("f.yaml#0", "Model", "m2", "spec.pricing.inputPerMillion")]),
    ([TINY_PRICE], [("f.yaml#0", "Model", "m2", "spec.pricing.inputPerMillion")]),
    ([tenant("t3", "eu", budget={"monthlyUsd": "9" * 5000})], [("f.yaml#0", "Tenant", "t3", "spec.budget.monthlyUsd")]),
    ([tenant("t3", "eu", routes=["nope"])], [("f.yaml#0", "Tenant", "t3", "spec.routes[0]")]),
    ([api_key("k3", "ghost")], [("f.yaml#0", "ApiKey", "k3", "spec.tenant")]),
    ([api_key("k3", "t", project="nope")], [("f.yaml#0", "ApiKey", "k3", "spec.project")]),
    ([{"kind": "Gadget", "metadata": {"name": "g"}}], [("f.yaml#0", "Gadget", "g", "kind")]),
    (["just a string"], [("f.yaml#0", "", "", "")]),
    ([route("r2", "m"), route("r2", "m")], [("f.yaml#1", "Route", "r2", "metadata.name")]),
    # every problem is reported, not just the first
    ([BAD_PRICE, tenant("BAD", "eu")],
     [("f.yaml#0", "Model", "m2", "spec.pricing.inputPerMillion"), ("f.yaml#1", "Tenant", "BAD", "metadata.name")]),
])
def test_plan_apply_problems(documents: list[object], expected: list[tuple[str, str, str, str]]) -> None:
    plan = engine.plan_apply(state_of(*BASE), docs(*documents))
    assert [(p.source, p.kind, p.name, p.field) for p in plan.problems] == expected
    assert all(p.message for p in plan.problems)


@pytest.mark.parametrize(("kind", "name", "referrers"), [
    ("ApiKey", "k", []),
    ("Tenant", "t", [("ApiKey", "k", "spec.tenant")]),
    ("Model", "m", [("Route", "r", "spec.models[0]")]),
    ("Provider", "p", [("Model", "m", "spec.provider")]),
])
def test_plan_delete(kind: str, name: str, referrers: list[tuple[str, str, str]]) -> None:
    plan = engine.plan_delete(state_of(*BASE), kind, name)
    assert [(p.kind, p.name, p.field) for p in plan.problems] == referrers
    assert ops(plan) == [("delete", kind, name)]


def test_undo_and_restore_round_trip() -> None:
    """Undoing the entries after generation 1 gives back exactly generation 1's policy."""
    g1 = state_of(*BASE)
    apply2 = engine.plan_apply(g1, docs(provider("p", base_url="http://127.0.0.1:9/v1"), route("r2", "m")))
    g2 = engine.after_commit(apply2, 2, 20)
    delete3 = engine.plan_delete(g2, "ApiKey", "k")
    g3 = engine.after_commit(delete3, 3, 30)
    entries = [engine.history_entry(3, "t3", "bob", delete3.writes),
               engine.history_entry(2, "t2", "alice", apply2.writes)]
    plan = engine.plan_restore(g3, engine.undo(entries), "generation 1")
    assert plan.problems == ()
    assert sorted(ops(plan)) == [("create", "ApiKey", "k"), ("delete", "Route", "r2"), ("update", "Provider", "p")]
    restored = engine.after_commit(plan, 4, 40)
    assert {k: v.canonical for k, v in restored.resources.items()} == {k: v.canonical for k, v in g1.resources.items()}


def test_restore_is_reference_checked() -> None:
    """Bringing back a key whose tenant is gone is refused like any apply."""
    state = state_of(provider("p"))
    target = {("ApiKey", "k"): Stored.of(parse_resource(api_key("k", "t"))).canonical}
    plan = engine.plan_restore(state, target, "generation 1")
    assert [(p.kind, p.name, p.field) for p in plan.problems] == [("ApiKey", "k", "spec.tenant")]


def test_history_entry_keeps_before_and_after_of_writes_only() -> None:
    plan = engine.plan_apply(state_of(*BASE), docs(provider("p"), route("r2", "m")))
    entry = engine.history_entry(2, "2026-01-01T00:00:00Z", "alice", plan.changes)
    assert entry["changes"] == [{"op": "create", "kind": "Route", "name": "r2", "before": None,
                                 "after": plan.changes[1].after}]
    assert engine.history_summary(entry) == {"revision": 2, "time": "2026-01-01T00:00:00Z", "who": "alice",
                                             "changes": [{"op": "create", "kind": "Route", "name": "r2"}]}


@pytest.mark.parametrize(("before", "after", "header", "marks"), [
    (None, {"a": 1}, "--- /dev/null\n+++ b/Route/r\n@@ -0,0 +1,3 @@\n", {"+"}),
    ({"a": 1}, None, "--- a/Route/r\n+++ /dev/null\n@@ -1,3 +0,0 @@\n", {"-"}),
    ({"a": 1, "b": 2}, {"a": 1, "b": 3}, "--- a/Route/r\n+++ b/Route/r\n", {" ", "-", "+", "@"}),
])
def test_diff_text(before: dict[str, Any] | None, after: dict[str, Any] | None, header: str, marks: set[str]) -> None:
    text = engine.diff_text("Route", "r", before, after)
    assert text.startswith(header)
    body = text[len(header):].splitlines()
    assert {line[0] for line in body} == marks


def test_update_diff_shows_the_changed_field() -> None:
    plan = engine.plan_apply(state_of(*BASE), docs(provider("p", base_url="http://127.0.0.1:2/v1")))
    diff = plan.changes[0].diff()
    assert '-    "baseUrl": "http://127.0.0.1:1/v1",' in diff.splitlines()
    assert '+    "baseUrl": "http://127.0.0.1:2/v1",' in diff.splitlines()
