"""What several replicas share through one etcd, each replica with its own connection, as separate processes
would have: budget grants issued and settled by any replica, rate-limit demand, and the data-plane registry."""

from __future__ import annotations

import asyncio
import random
import time

from controlplane.ha.election import EtcdElection
from controlplane.ha.shared import ReplicaSync, dataplane_key, record_json
from controlplane.money.lease_service import RateBoard
from controlplane.money.ledger import AskIn, Charge, Ledger
from controlplane.push.discovery import DataPlaneRecord, Registry
from controlplane.push.publisher import Publisher
from controlplane.store.base import Store
from controlplane.store.etcd import EtcdStore
from tollway.budget_scopes import BudgetLimit

PERIOD, SCOPE = "2026-12", "tenant/acme"
LIMIT = BudgetLimit(monthly_pico=2_000_000, soft_percent=100, safe_allowance_pico=0)


async def test_three_replicas_issuing_and_settling_grants_concurrently_never_overspend_nor_double_count(
        etcd_store: Store, etcd_url: str) -> None:
    replicas = [Ledger(await EtcdStore.connect(etcd_url), ttl_s=30, grace_s=60) for _ in range(3)]
    rng = random.Random(16)
    told = 0
    breaches: list[str] = []

    async def node(name: str) -> None:
        nonlocal told
        granted = spent = 0
        for seq in range(1, 16):
            # Each exchange goes to whichever replica the data plane is connected to at the moment.
            ask = AskIn(SCOPE, PERIOD, spent=spent, reserved=0, want=200_000, release=False, need=5_000)
            answer = (await rng.choice(replicas).lease(name, f"{name}-inc", [(ask, LIMIT)], time.time()))[0]
            granted = answer.granted
            cost = min(granted - spent, rng.randrange(1_000, 60_000))
            if cost <= 0:
                await asyncio.sleep(0.01)
                continue
            spent += cost
            charges = [Charge(PERIOD, SCOPE, LIMIT, cost)]
            first, second = rng.sample(replicas, 2)
            assert await first.settle_batch(name, "epoch-1", seq, charges)
            told += cost
            # The acknowledgement was lost: the data plane resends the batch to another replica, which settles
            # nothing again.
            assert not await second.settle_batch(name, "epoch-1", seq, charges)

    async def watch_invariant(stop: asyncio.Event) -> None:
        while not stop.is_set():
            st = await replicas[0].state(PERIOD, SCOPE)
            if st.spent + st.outstanding() > LIMIT.monthly_pico:
                breaches.append(f"spent {st.spent} + outstanding {st.outstanding()} > {LIMIT.monthly_pico}")
            await asyncio.sleep(0.005)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_invariant(stop))
    try:
        await asyncio.gather(*(node(f"dp-{i}") for i in range(8)))
    finally:
        stop.set()
        await watcher
        for r in replicas:
            await r.store.close()
    st = await Ledger(etcd_store).state(PERIOD, SCOPE)
    assert not breaches, breaches[:3]
    assert st.spent == told  # every batch settled exactly once, whichever replicas saw it
    assert st.spent + st.outstanding() <= LIMIT.monthly_pico
    assert told > LIMIT.monthly_pico // 2  # the budget was really contended, not idle


def _record(node: str, *, last_seen: float, connected: bool = True) -> DataPlaneRecord:
    return DataPlaneRecord(node_id=node, region="eu", version="v1", status="ACK", error="", last_seen=last_seen,
                           connected=connected, stream=1)


async def _replica(etcd_url: str, name: str, clock: list[float]) -> tuple[EtcdStore, EtcdElection, ReplicaSync]:
    store = await EtcdStore.connect(etcd_url)
    election = EtcdElection(store, name, ttl_s=2)
    registry = Registry(Publisher(store))
    sync = ReplicaSync(store, election, registry, RateBoard(ttl_s=30), addresses=lambda: ("http://a", "g:1"),
                       retention_s=3600, clock=lambda: clock[0])
    return store, election, sync


async def test_rate_demand_the_registry_and_its_pruning_are_shared_between_replicas(
        etcd_store: Store, etcd_url: str) -> None:
    clock = [time.time()]
    (s1, e1, one), (s2, e2, two) = [await _replica(etcd_url, n, clock) for n in ("cp1", "cp2")]
    try:
        await e1.tick()  # cp1 holds the duties
        await e2.tick()
        assert e1.is_held() and not e2.is_held()
        # dp-a leases from cp1, dp-b from cp2, with equal demand on one fleet-wide rate limit.
        one._rates.report("dp-a", "rate/acme", 10.0, 100.0, clock[0])
        two._rates.report("dp-b", "rate/acme", 10.0, 100.0, clock[0])
        assert one._rates.share("dp-a", "rate/acme", clock[0]) == (1.0, 1.0)  # alone as far as cp1 knows
        one._registry.put(_record("dp-a", last_seen=clock[0]))
        two._registry.put(_record("dp-b", last_seen=clock[0]))
        for sync in (one, two, one):
            await sync.sync()
        # Each replica splits the limit across the whole fleet: the shares add up to one limit, not two.
        share_a = one._rates.share("dp-a", "rate/acme", clock[0])
        share_b = two._rates.share("dp-b", "rate/acme", clock[0])
        assert share_a == share_b == (0.5, 0.5)
        # Every replica shows every data plane.
        for sync in (one, two):
            assert [d["nodeId"] for d in sync._registry.dataplanes()] == ["dp-a", "dp-b"]
        assert {p.replica: p.dataplanes for p in two.replicas} == {"cp1": ("dp-a",), "cp2": ("dp-b",)}

        # A record not seen for longer than the retention is pruned, by the duty holder only.
        await etcd_store.txn([], [(dataplane_key("dp-old", "cp9"),
                                   record_json(_record("dp-old", last_seen=clock[0] - 7200), "cp9"))])
        await two.sync()
        assert await etcd_store.get(dataplane_key("dp-old", "cp9")) is not None
        assert [d["connected"] for d in two._registry.dataplanes() if d["nodeId"] == "dp-old"] == [False]
        await one.sync()
        assert await etcd_store.get(dataplane_key("dp-old", "cp9")) is None and one.pruned == 1
    finally:
        for election, store in ((e1, s1), (e2, s2)):
            await election.resign()
            await store.close()
