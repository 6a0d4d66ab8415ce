"""UsageDB on a DuckDB file: one transaction per batch, replays are no-ops, spend reports in integer micro-dollars."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.usage.db import SpendRow, UsageDB
from tests.usage.conftest import record
from tollway.pb import usage_pb2 as upb

T0 = 1_700_000_000_000


def batch(sequence: int, records: list[upb.UsageRecord], node: str = "dp-1", epoch: str = "e1") -> upb.UsageBatch:
    return upb.UsageBatch(node_id=node, epoch=epoch, sequence=sequence, records=records)


async def test_a_batch_is_stored_once_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "usage.duckdb")
    db = await UsageDB.open(path)
    try:
        assert await db.store_batch(batch(1, [record(0), record(1)]))
        assert not await db.store_batch(batch(1, [record(0), record(1)]))
        assert await db.store_batch(batch(1, [record(2)], epoch="e2"))  # a new spool: a new key
        assert await db.store_batch(batch(1, [record(3)], node="dp-2"))
    finally:
        await db.close()
    db = await UsageDB.open(path)
    try:
        assert not await db.store_batch(batch(1, [record(0), record(1)]))
        assert sorted(await db.request_ids()) == ["req-0", "req-1", "req-2", "req-3"]
        assert await db.count_batches() == 3 and await db.count_batches("dp-1") == 2
    finally:
        await db.close()


async def test_an_empty_batch_is_marked_stored(usage_db: UsageDB) -> None:
    assert await usage_db.store_batch(batch(1, []))
    assert not await usage_db.store_batch(batch(1, []))
    assert await usage_db.count_batches() == 1 and await usage_db.request_ids() == []


async def test_spend_groups_sum_and_filter_by_time(usage_db: UsageDB) -> None:
    records = [
        upb.UsageRecord(request_id="a", timestamp_ms=T0, tenant="acme", project="web", user="ann", route="gpt",
                        deployment="d1", input_tokens=10, output_tokens=5, cost_micros=1_500, tags=["x", "y"]),
        upb.UsageRecord(request_id="b", timestamp_ms=T0 + 1_000, tenant="acme", project="api", user="bob",
                        route="gpt", deployment="d2", input_tokens=20, cached_input_tokens=4, output_tokens=1,
                        cost_micros=2_000_000_000_123, tags=["x"]),
        upb.UsageRecord(request_id="c", timestamp_ms=T0 + 2_000, tenant="globex", project="web", user="cy",
                        route="claude", deployment="d3", input_tokens=7, cost_micros=7),
    ]
    assert await usage_db.store_batch(batch(1, records))
    assert await usage_db.spend(["tenant"]) == [
        # integers, no float rounding: records of micro-dollars only (older data planes) count x 1e6, exactly
        SpendRow(("acme",), 2, 30, 4, 6, 2_000_000_001_623 * 10**6),
        SpendRow(("globex",), 1, 7, 0, 0, 7 * 10**6),
    ]
    assert [(r.key, r.cost_pico // 10**6) for r in await usage_db.spend(["tenant", "project"])] == [
        (("acme", "api"), 2_000_000_000_123), (("acme", "web"), 1_500), (("globex", "web"), 7)]
    assert [(r.key, r.requests) for r in await usage_db.spend(["tag"])] == [(("x",), 2), (("y",), 1)]
    assert [r.key for r in await usage_db.spend(["user"], since_ms=T0 + 1_000, until_ms=T0 + 2_000)] == [("bob",)]
    assert [r.key for r in await usage_db.spend(["deployment"], where={"route": "gpt"})] == [("d2",), ("d1",)]
    assert await usage_db.spend(["route"], where={"tenant": "nobody"}) == []


async def test_unknown_dimensions_are_refused(usage_db: UsageDB) -> None:
    with pytest.raises(ValueError):
        await usage_db.spend(["tenant; DROP TABLE batches"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await usage_db.spend([])
