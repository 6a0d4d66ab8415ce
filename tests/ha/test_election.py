"""The replicas' election on a real etcd: one holder, a fast handover when it dies, and fencing.

A replica "dies" by losing its etcd connection without resigning (its lease then expires on etcd's clock, as
after a SIGKILL); a clean stop resigns and hands over at once.
"""

from __future__ import annotations

import asyncio
import time

from controlplane.ha.election import LEADER, EtcdElection
from controlplane.store.base import Store
from controlplane.store.etcd import EtcdStore

TTL = 2.0


async def _until(predicate: object, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if callable(predicate) and predicate():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within_s} s")


async def test_one_holder_a_dead_holder_is_replaced_within_the_lease_and_its_writes_are_fenced(
        etcd_store: Store, etcd_url: str) -> None:
    stores = [await EtcdStore.connect(etcd_url) for _ in range(2)]
    a, b = (EtcdElection(s, name, ttl_s=TTL) for s, name in zip(stores, ("a", "b"), strict=True))
    task_a = asyncio.create_task(a.run())
    await _until(a.is_held, 5)
    task_b = asyncio.create_task(b.run())
    try:
        await asyncio.wait_for(b.ready.wait(), 5)
        await asyncio.sleep(TTL)
        assert a.is_held() and not b.is_held()  # one holder at a time
        stale_fence = a.fence()
        assert (await etcd_store.txn(stale_fence, [("/tollway/test/duty", b"a")])).succeeded

        task_a.cancel()  # a dies: no resign, its lease runs out on etcd's clock
        await asyncio.gather(task_a, return_exceptions=True)
        await stores[0].close()
        took = await _until(b.is_held, TTL * 4 / 3 + 3)
        assert took <= TTL * 4 / 3 + 3
        kv = await etcd_store.get(LEADER)
        assert kv is not None and b"\"b\"" in kv.value
        # The old holder's fence no longer matches: whatever it still tries to write is refused whole.
        assert not (await etcd_store.txn(stale_fence, [("/tollway/test/duty", b"a again")])).succeeded
        assert (await etcd_store.txn(b.fence(), [("/tollway/test/duty", b"b")])).succeeded
        duty = await etcd_store.get("/tollway/test/duty")
        assert duty is not None and duty.value == b"b"

        await b.resign()  # a clean stop deletes the key at once
        assert await etcd_store.get(LEADER) is None
    finally:
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)
        for s in stores:
            await s.close()
