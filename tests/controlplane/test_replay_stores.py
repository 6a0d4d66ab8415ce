"""A replay reads either usage store: the same recorded batches, stored in DuckDB and in a real PostgreSQL (the
``postgres_url`` fixture), read back as the same rows in the same order and replayed into the same report, with
budgets starting from the spend recorded before the window."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controlplane.policy.compile import compile_region
from controlplane.replay.report import replay
from controlplane.replay.simulate import Recorded
from controlplane.replay.traffic import count_traffic, read_traffic, spend_before, spent_by_scope
from controlplane.usage.db import UsageDB
from controlplane.usage.postgres import PostgresUsageDB
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant
from tollway.budget_scopes import BudgetIndex
from tollway.pb import snapshot_pb2 as pb
from tollway.pb import usage_pb2 as upb

MONTH_MS = 1_767_225_600_000  # 1 January 2026, UTC
SINCE_MS = MONTH_MS + 10 * 86_400_000  # the window: 11 January 2026, one day
UNTIL_MS = SINCE_MS + 86_400_000


def policy(*, proposed: bool) -> pb.Snapshot:
    """Route chat on the cheap deployment a, failing over to b; the proposal serves it from b alone and gives
    the tenant a $0.05 monthly budget."""
    team: dict[str, Any] = {"budget": {"monthlyUsd": "0.05"}} if proposed else {}
    return compile_region(policy_of(
        provider("p-eu", "eu", type_="mock"),
        model("a", "p-eu", inp="1", out="2", capabilities=["tools"]),
        model("b", "p-eu", inp="5", out="10", capabilities=["tools"]),
        route("chat", "b") if proposed else route("chat", "a", "b"), route("fast", "a"),
        tenant("team", "eu", **team),
        api_key("app", "team", digest="a1" * 32), api_key("ci", "team", digest="c1" * 32, routes=["chat"])), "eu")


def usage(i: int, ts_ms: int, **fields: Any) -> upb.UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"r-{i}", "timestamp_ms": ts_ms, "tenant": "team", "key_id": "app", "route": "chat",
        "deployment": "a", "provider": "p-eu", "region": "eu", "snapshot_version": "v1", "input_tokens": 1_000,
        "output_tokens": 500, "cost_pico": 2_000_000_000, "status": 200, "attempts": 1, "node_id": "dp-1",
        "surface": "chat", "needs": ["tools"], "estimated_prompt_tokens": 300, "max_tokens": 500}
    values.update(fields)
    return upb.UsageRecord(**values)


def batches() -> list[upb.UsageBatch]:
    """$0.02 spent in January before the window; in it, 10 requests served by a, a minute apart, and 2 refusals
    of key ci on route fast, each at the same millisecond as a served one: the 5th (earlier in the same batch)
    and the 6th (in the next batch, after the refusal)."""
    before = usage(0, MONTH_MS + 3_600_000, cost_pico=20_000_000_000)
    served = [usage(i, SINCE_MS + 60_000 * i) for i in range(1, 11)]

    def refusal(i: int, ts_ms: int) -> upb.UsageRecord:
        return usage(i, ts_ms, key_id="ci", route="fast", deployment="", provider="", input_tokens=0,
                     output_tokens=0, cost_pico=0, status=403, needs=[], refusal="model_not_allowed")

    return [upb.UsageBatch(node_id="dp-1", epoch="e1", sequence=1,
                           records=[before, *served[:5], refusal(11, SINCE_MS + 300_000)]),
            upb.UsageBatch(node_id="dp-1", epoch="e1", sequence=2,
                           records=[refusal(12, SINCE_MS + 360_000), *served[5:]])]


def replayed(db: Any) -> tuple[int, list[Recorded], dict[str, Any]]:
    """Count, rows and report of the window, on the reader's own thread (as the admin API runs it)."""
    current, proposed = policy(proposed=False), policy(proposed=True)
    total = count_traffic(db, SINCE_MS, UNTIL_MS)
    rows = list(read_traffic(db, SINCE_MS, UNTIL_MS, chunk=4))  # several chunks
    groups = spend_before(db, SINCE_MS)

    def spent(index: BudgetIndex) -> Any:
        return spent_by_scope(groups, index, SINCE_MS)

    report = replay(iter(rows), lambda region: (current, proposed), spent, SINCE_MS, UNTIL_MS)
    return total, rows, report


async def stored_and_replayed(db: UsageDB) -> tuple[int, list[Recorded], dict[str, Any]]:
    try:
        for batch in batches():
            assert await db.store_batch(batch)
        reader = await db.reader()
        try:
            return await asyncio.to_thread(replayed, reader)
        finally:
            reader.close()
    finally:
        await db.close()


async def test_duckdb_and_postgresql_replay_the_same_rows_into_the_same_report(
        tmp_path: Path, postgres_url: str) -> None:
    duck = await stored_and_replayed(await UsageDB.open(str(tmp_path / "usage.duckdb")))
    postgres = await stored_and_replayed(await PostgresUsageDB.connect(postgres_url))
    assert postgres == duck

    total, rows, report = duck
    assert total == len(rows) == 12  # the record before the window is not replayed
    # Oldest first; a tie in time keeps the batches' order; every value is a plain Python value (no Decimal).
    assert [r.ts_ms for r in rows] == sorted(r.ts_ms for r in rows)
    assert [r.key_id for r in rows] == ["app"] * 5 + ["ci"] * 2 + ["app"] * 5
    assert rows[5].refusal == rows[6].refusal == "model_not_allowed" and rows[4].ts_ms == rows[5].ts_ms
    assert {type(v) for r in rows for v in r} <= {int, str, bool}
    assert rows[0][8:] == ("tools", 300, 500, False, "a", "", 1_000, 0, 0, 500, 0)
    assert report["reproduced"] == {"requests": 12, "matching": 12, "mismatches": []}
    # Under the proposal a request costs $0.01 on b and may cost up to $0.011 (1,200 prompt tokens at $5/M,
    # 500 out at $10/M). The budget starts at $0.05 - $0.02 spent before the window: two fit, then $0.01 is left.
    assert report["changes"] == {"refused": 8, "allowed": 0, "moved": 2}
    assert [(r["key"], r["reason"], r["code"], r["requests"]) for r in report["refused"]] == [
        ("app", "budget", "tenant_budget_exceeded", 8)]
    assert [(m["from"], m["to"], m["requests"], m["costDeltaPico"]) for m in report["moved"]] == [
        ("a", "b", 2, 2 * (10_000_000_000 - 2_000_000_000))]
