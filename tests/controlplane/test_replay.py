"""The replay core over recorded rows (``controlplane.replay``), no database and no sockets: budgets and rate
limits evolve along the recorded timestamps, and a replay is deterministic for a window, policy pair and seed."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.policy.compile import compile_region
from controlplane.replay.report import replay
from controlplane.replay.simulate import Recorded
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant
from tollway.budget_scopes import BudgetIndex, tenant_scope
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

T0_MS = 1_767_225_600_000 + 10 * 86_400_000  # 11 January 2026, UTC
IN, OUT = 1_000, 1_000  # tokens of every recorded request served


def docs(*, budget_usd: str | None = None, rpm: int | None = None, weights: tuple[int, int] = (1, 1)
         ) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {}
    if budget_usd is not None:
        spec["budget"] = {"monthlyUsd": budget_usd}
    if rpm is not None:
        spec["rateLimits"] = {"requestsPerMinute": rpm}
    return [provider("p-eu", "eu", type_="mock"), model("a", "p-eu", inp="0.2", out="1"),
            model("b", "p-eu", inp="1", out="5"), route("chat", "a", "b", strategy="weighted", weights=list(weights)),
            tenant("team", "eu", **spec), api_key("k", "team")]


def row(i: int, deployment: str = "a", refusal: str = "", every_s: float = 1.0) -> Recorded:
    served = not refusal
    return Recorded(T0_MS + int(i * every_s * 1000), "eu", "team", "", "", "k", "chat", "chat", "", 100, 1_000,
                    False, deployment if served else "", refusal, IN if served else 0, 0, 0, OUT if served else 0,
                    0)


def run(rows: list[Recorded], current: list[dict[str, Any]], proposed: list[dict[str, Any]],
        spent_usd: int = 0, seed: int = 0) -> dict[str, Any]:
    snaps = compile_region(policy_of(*current), "eu"), compile_region(policy_of(*proposed), "eu")

    def spent(index: BudgetIndex) -> dict[tuple[str, str], int]:
        return {(tenant_scope("team"), "2026-01"): spent_usd * 10**12} if spent_usd else {}

    def snapshots(region: str) -> tuple[pb.Snapshot, pb.Snapshot]:
        return snaps

    return replay(rows, snapshots, spent, T0_MS, T0_MS + 86_400_000, seed)


def test_a_budget_with_room_refuses_nothing_and_the_replay_is_deterministic() -> None:
    rows = [row(i) for i in range(10)]
    report = run(rows, docs(weights=(1, 0)), docs(budget_usd="1", weights=(1, 0)))
    assert report["changes"] == {"refused": 0, "allowed": 0, "moved": 0}
    assert run(rows, docs(weights=(1, 0)), docs(budget_usd="1", weights=(1, 0))) == report


def test_a_budget_starts_from_the_spend_recorded_before_the_window_and_evolves_with_the_replayed_cost() -> None:
    rows = [row(i) for i in range(10)]
    # $1.01 a month, $1 spent before the window: $0.01 left. A request's worst case is $0.006 (1,000 prompt tokens
    # at $1/M and 1,000 out at $5/M on b, the dearer candidate); each costs $0.0012 (served by a). Left before
    # each: 0.01, 0.0088, 0.0076, 0.0064 (all ≥ 0.006), then 0.0052: the last 6 are refused.
    report = run(rows, docs(weights=(1, 0)), docs(budget_usd="1.01", weights=(1, 0)), spent_usd=1)
    assert [(r["reason"], r["code"], r["requests"]) for r in report["refused"]] == [
        ("budget", "tenant_budget_exceeded", 6)]


def test_a_tighter_rate_limit_refuses_along_the_recorded_timestamps() -> None:
    burst = [row(i, every_s=0.1) for i in range(10)]  # 10 requests in one second
    report = run(burst, docs(weights=(1, 0)), docs(rpm=3, weights=(1, 0)))
    assert [(r["reason"], r["requests"]) for r in report["refused"]] == [("rate limit", 7)]
    spread = [row(i, every_s=30.0) for i in range(10)]  # one every 30 s: a 3-a-minute bucket refills in time
    assert run(spread, docs(weights=(1, 0)), docs(rpm=3, weights=(1, 0)))["changes"]["refused"] == 0


def test_weighted_draws_are_seeded_the_same_for_both_policies_and_the_recorded_pick_is_kept() -> None:
    rows = [row(i, deployment="a" if i % 2 else "b") for i in range(40)]
    same = run(rows, docs(), docs())
    assert same["reproduced"]["matching"] == 40 and same["changes"] == {"refused": 0, "allowed": 0, "moved": 0}
    moved = run(rows, docs(), docs(weights=(1, 0)), seed=7)
    assert moved == run(rows, docs(), docs(weights=(1, 0)), seed=7)  # deterministic for a seed
    assert moved["changes"]["moved"] > 0
    assert {(m["from"], m["to"]) for m in moved["moved"]} == {("b", "a")}


def test_a_recorded_refusal_is_reproduced_and_one_lifted_by_the_proposal_is_reported() -> None:
    rows = [row(i, every_s=0.1) for i in range(3)] + [row(3, refusal="rate_limit_exceeded", every_s=0.1)]
    report = run(rows, docs(rpm=3, weights=(1, 0)), docs(weights=(1, 0)))
    assert report["reproduced"]["matching"] == 4
    assert [(r["key"], r["was"], r["requests"]) for r in report["allowed"]] == [("k", "rate limit", 1)]


def test_traffic_of_a_region_the_proposal_no_longer_compiles_is_refused_and_the_rest_still_replays() -> None:
    # The admin API hands a region no policy compiles for as an empty snapshot: a data plane there would know
    # no key, so its recorded requests are refused as "key", and the replay goes on.
    current = compile_region(policy_of(*docs(weights=(1, 0))), "eu")

    def snapshots(region: str) -> tuple[pb.Snapshot, pb.Snapshot]:
        return (current, pb.Snapshot()) if region == "us" else (current, current)

    rows = [row(0), row(1)._replace(region="us"), row(2)]
    report = replay(rows, snapshots, lambda index: {}, T0_MS, T0_MS + 86_400_000)
    assert report["requests"] == 3 and report["reproduced"]["matching"] == 3
    assert [(r["reason"], r["code"], r["requests"]) for r in report["refused"]] == [("key", "key_unknown", 1)]
