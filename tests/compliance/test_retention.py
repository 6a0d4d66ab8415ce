"""Usage retention against both engines (a real DuckDB file, a real PostgreSQL database): each tenant's events
older than its retentionDays are deleted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from controlplane.policy.compile import PolicySet
from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.policy.resources import dump_resource
from controlplane.store.open import open_store
from controlplane.usage.db import UsageDB
from controlplane.usage.retention import DAY_MS, RetentionTask
from tests.compliance.helpers import control_plane
from tests.core.policy_docs import policy_of, tenant
from tollway.pb import usage_pb2 as upb

NOW = 1_750_000_000.0  # a fixed "now" (unix seconds) for the injected clock


def policy() -> PolicySet:
    return policy_of(tenant("short", "eu", logging={"retentionDays": 7}),
                     tenant("long", "eu", logging={"retentionDays": 365}))


def batch(sequence: int, now_s: float, events: list[tuple[str, int]]) -> upb.UsageBatch:
    """One usage batch with an event per (tenant, age in days); request ids are ``tenant-age``."""
    b = upb.UsageBatch(node_id="dp-1", epoch="e1", sequence=sequence)
    for tenant_name, days in events:
        b.records.add(request_id=f"{tenant_name}-{days}", tenant=tenant_name,
                      timestamp_ms=int(now_s * 1000) - days * DAY_MS, cost_micros=1)
    return b


EVENTS = [("short", 1), ("short", 6), ("short", 8), ("short", 100), ("long", 8), ("long", 364), ("long", 366),
          ("gone", 30), ("gone", 91)]


async def test_each_tenant_keeps_its_retention_and_unknown_tenants_the_default(any_usage_db: UsageDB) -> None:
    db = any_usage_db
    await db.store_batch(batch(1, NOW, EVENTS))
    clock = [NOW]
    task = RetentionTask(db, _source(policy()), clock=lambda: clock[0])

    assert await task.run_once() == 4
    assert sorted(await db.request_ids()) == ["gone-30", "long-364", "long-8", "short-1", "short-6"]

    clock[0] = NOW + 2 * 86400  # two days later "short-6" is 8 days old, "long-364" 366
    assert await task.run_once() == 2
    assert sorted(await db.request_ids()) == ["gone-30", "long-8", "short-1"]
    assert (task.stats.runs, task.stats.deleted) == (2, 6)
    assert await db.count_batches() == 1  # the batch marker stays: a replay of it is still a no-op
    assert not await db.store_batch(batch(1, NOW, EVENTS))


def _source(p: PolicySet) -> Callable[[], Awaitable[PolicySet]]:
    async def get() -> PolicySet:
        return p
    return get


async def test_a_failing_run_is_counted_and_the_task_keeps_going(tmp_path: Path) -> None:
    db = await UsageDB.open(None)
    calls = 0

    async def flaky() -> PolicySet:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("store unreachable")
        return policy()

    await db.store_batch(batch(1, time.time(), [("short", 30)]))
    task = RetentionTask(db, flaky, interval=0.01)
    task.start()
    try:
        for _ in range(500):
            if task.stats.runs:
                break
            await asyncio.sleep(0.01)
        assert task.stats.failures >= 1 and task.stats.runs >= 1
        assert await db.request_ids() == []
    finally:
        await task.stop()
        await db.close()


async def test_the_control_plane_applies_retention_when_it_starts(tmp_path: Path) -> None:
    # Events already in the control plane's DuckDB file, from before this start.
    path = tmp_path / "cp" / "usage.duckdb"
    path.parent.mkdir(parents=True)
    db = await UsageDB.open(str(path))
    await db.store_batch(batch(1, NOW, EVENTS))
    await db.close()

    store = await open_store("embedded://")
    try:
        documents = [Document("test", dump_resource(r)) for r in policy().all()]
        await Repository(store).apply(documents, who="test")
        async with control_plane(tmp_path, store=store, clock=lambda: NOW) as (cp, _):
            assert cp.retention is not None
            for _ in range(500):  # the first run starts with the control plane
                if cp.retention.stats.runs:
                    break
                await asyncio.sleep(0.01)
            assert sorted(await cp.usage_db.request_ids()) == [
                "gone-30", "long-364", "long-8", "short-1", "short-6"]
    finally:
        await store.close()
