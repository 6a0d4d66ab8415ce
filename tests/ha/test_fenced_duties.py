"""A singleton duty that writes outside etcd is fenced too: usage retention in the shared PostgreSQL carries the
election's revision as a fencing token, and a replica that lost the duty deletes nothing once the new holder has
run (real etcd, real PostgreSQL, each replica with its own connections, as separate processes would have)."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.ha.election import EtcdElection
from controlplane.store.base import Store
from controlplane.store.etcd import EtcdStore
from controlplane.usage.postgres import FencedOut, PostgresUsageDB
from controlplane.usage.retention import DAY_MS
from tollway.pb import usage_pb2 as upb

TTL = 2.0


def _old_events(sequence: int, *request_ids: str) -> upb.UsageBatch:
    """Events 100 days old: past the 90-day default retention."""
    batch = upb.UsageBatch(node_id="dp-1", epoch="e1", sequence=sequence)
    for request_id in request_ids:
        batch.records.add(request_id=request_id, tenant="acme", timestamp_ms=int(time.time() * 1000) - 100 * DAY_MS,
                          cost_micros=1)
    return batch


def _cutoff() -> int:
    return int(time.time() * 1000) - 90 * DAY_MS


async def _until_held(election: EtcdElection, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not election.is_held():
        assert time.monotonic() < deadline, f"{election.replica} did not take the duty within {within_s} s"
        await asyncio.sleep(0.05)


async def test_retention_by_a_replica_that_lost_the_duty_is_refused_by_the_usage_store(
        etcd_store: Store, etcd_url: str, postgres_url: str) -> None:
    stores = [await EtcdStore.connect(etcd_url) for _ in range(2)]
    dbs = [await PostgresUsageDB.connect(postgres_url) for _ in range(2)]
    a, b = (EtcdElection(s, name, ttl_s=TTL) for s, name in zip(stores, ("cp1", "cp2"), strict=True))
    task_a = asyncio.create_task(a.run())
    task_b: asyncio.Task[None] | None = None
    try:
        await _until_held(a, 5)
        task_b = asyncio.create_task(b.run())
        await asyncio.wait_for(b.ready.wait(), 5)
        assert b.token() == -1  # not the holder: a token every fenced store refuses
        with pytest.raises(FencedOut):
            await dbs[1].delete_older_than({}, _cutoff(), fence=b.token())

        await dbs[0].store_batch(_old_events(1, "r1"))
        stale = a.token()
        assert stale > 0 and await dbs[0].delete_older_than({}, _cutoff(), fence=stale) == 1

        # cp1 stalls past its lease (it is not stopped, so it does not resign): cp2 takes the duty.
        task_a.cancel()
        await asyncio.gather(task_a, return_exceptions=True)
        await stores[0].close()
        await _until_held(b, TTL * 4 / 3 + 3)
        assert b.token() > stale
        await dbs[1].store_batch(_old_events(2, "r2"))
        assert await dbs[1].delete_older_than({}, _cutoff(), fence=b.token()) == 1

        # cp1 wakes up still believing it holds the duty, with its old token: nothing is deleted.
        await dbs[0].store_batch(_old_events(3, "r3"))
        with pytest.raises(FencedOut, match="newer holder"):
            await dbs[0].delete_older_than({}, _cutoff(), fence=stale)
        assert await dbs[0].request_ids() == ["r3"]
        assert await dbs[1].delete_older_than({}, _cutoff(), fence=b.token()) == 1  # the holder still can
    finally:
        for task in (task_a, task_b):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await b.resign()
        for db in dbs:
            await db.close()
        for s in stores:
            await s.close()
