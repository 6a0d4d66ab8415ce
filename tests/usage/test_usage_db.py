"""UsageDB on a DuckDB file: one transaction per batch, replays are no-ops, spend reports in integer micro-dollars."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from controlplane.usage.db import SCHEMA, SpendRow, UsageDB
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
                        route="gpt", deployment="d2", input_tokens=20, cached_input_tokens=4, cache_write_tokens=3,
                        cache_write_1h_tokens=2, output_tokens=1, reasoning_tokens=1, cost_micros=2_000_000_000_123,
                        tags=["x"]),
        upb.UsageRecord(request_id="c", timestamp_ms=T0 + 2_000, tenant="globex", project="web", user="cy",
                        route="claude", deployment="d3", input_tokens=7, cost_micros=7),
    ]
    assert await usage_db.store_batch(batch(1, records))
    assert await usage_db.spend(["tenant"]) == [
        # integers, no float rounding: records of micro-dollars only (older data planes) count x 1e6, exactly;
        # cache writes at both rates are one kind here (their rates differ only in the cost)
        SpendRow(("acme",), 2, input_tokens=30, cached_input_tokens=4, cache_write_tokens=5, output_tokens=6,
                 reasoning_tokens=1, cost_pico=2_000_000_001_623 * 10**6),
        SpendRow(("globex",), 1, input_tokens=7, cached_input_tokens=0, cache_write_tokens=0, output_tokens=0,
                 reasoning_tokens=0, cost_pico=7 * 10**6),
    ]
    assert [(r.key, r.cost_pico // 10**6) for r in await usage_db.spend(["tenant", "project"])] == [
        (("acme", "api"), 2_000_000_000_123), (("acme", "web"), 1_500), (("globex", "web"), 7)]
    assert [(r.key, r.requests) for r in await usage_db.spend(["tag"])] == [(("x",), 2), (("y",), 1)]
    assert [r.key for r in await usage_db.spend(["user"], since_ms=T0 + 1_000, until_ms=T0 + 2_000)] == [("bob",)]
    assert [r.key for r in await usage_db.spend(["deployment"], where={"route": "gpt"})] == [("d2",), ("d1",)]
    assert await usage_db.spend(["route"], where={"tenant": "nobody"}) == []


async def test_a_database_from_before_the_token_kinds_reports_them_as_zero(tmp_path: Path) -> None:
    path = str(tmp_path / "old.duckdb")
    old = duckdb.connect(path)  # the table as a control plane without cost_pico and the token kinds wrote it
    old.execute(SCHEMA.split("cost_pico", 1)[0].rstrip().rstrip(",") + "\n);")
    old.execute("INSERT INTO usage_events VALUES ('dp-1', 'e1', 1, 0, 'old', epoch_ms(?), 'acme', 'web', '', 'k', "
                "'gpt', 'd1', 'openai', 'eu', 'v0', 10, 2, 5, 1500, 1, 1, 1, 200, '', 1, [], false)", [T0])
    old.close()
    db = await UsageDB.open(path)
    try:
        assert await db.spend(["tenant"]) == [
            SpendRow(("acme",), 1, input_tokens=10, cached_input_tokens=2, cache_write_tokens=0, output_tokens=5,
                     reasoning_tokens=0, cost_pico=1500 * 10**6)]
    finally:
        await db.close()


async def test_unknown_dimensions_are_refused(usage_db: UsageDB) -> None:
    with pytest.raises(ValueError):
        await usage_db.spend(["tenant; DROP TABLE batches"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await usage_db.spend([])
