"""The replicas on a three-member etcd cluster: SIGKILL the member a replica's store talks to, and the store
(one channel over every member, ``--store etcd://m1,m2,m3``) goes on through another; the election keeps its
holder, and a fenced duty write still succeeds."""

from __future__ import annotations

import asyncio
import time

from controlplane.ha.election import EtcdElection
from controlplane.store.base import StoreError
from controlplane.store.etcd import EtcdStore
from tests.ha.etcd_cluster import Cluster


async def test_the_store_and_the_duty_holder_outlive_the_etcd_member_they_talk_to(cluster: Cluster) -> None:
    store = await EtcdStore.connect(cluster.url, request_timeout=2)
    election = EtcdElection(store, "cp1", ttl_s=3)
    task = asyncio.create_task(election.run())
    try:
        await asyncio.wait_for(election.ready.wait(), 10)
        assert election.is_held()
        assert (await store.txn(election.fence(), [("/tollway/test/duty", b"before")])).succeeded
        cluster.kill(0)  # the first listed: the one the channel is connected to
        killed = time.monotonic()
        deadline, written = killed + 10, False
        while not written and time.monotonic() < deadline:
            try:
                written = (await store.txn(election.fence(), [("/tollway/test/duty", b"after")])).succeeded
            except StoreError:
                await asyncio.sleep(0.2)  # the channel is moving to another member (or etcd elects a leader)
        assert written, "no fenced write went through the surviving members within 10 s"
        print(f"\nHA figures: a fenced write through another etcd member {time.monotonic() - killed:.2f} s after "
              "the one the store talked to was killed")
        await asyncio.sleep(3)  # a lease's worth of refreshes through the other members
        assert election.is_held()
        kv = await store.get("/tollway/test/duty")
        assert kv is not None and kv.value == b"after"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
