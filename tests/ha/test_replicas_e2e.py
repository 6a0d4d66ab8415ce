"""Three control-plane replicas on a three-member etcd and one PostgreSQL usage store, three data planes given
every replica (``--control-plane cp1,cp2,cp3``), under steady load from the openai SDK (never retried): all real
processes, started with ``gatectl`` as an operator would (``bench.harness.fleet``), with ``--ha-ttl 4``
(at 2, on a loaded 2-core machine, a restarted replica once found the duties free, most likely because cp2's lease
lapsed while the etcd member was down; taking free duties is correct, but not what step 4 pins).

cp3 starts first and holds the singleton duties; the data planes stream from cp1, the first listed.

1. SIGKILL cp1, the replica every data plane is connected to: not one request fails, the data planes are on cp2
   within seconds, a policy change applied through cp2 reaches every data plane within 2 s.
2. SIGKILL cp3, the duty holder, while an alert delivery it owns is pending (the webhook receiver refusing):
   cp2 takes the duties within 10 s (``gatectl controlplane status``) and delivers the alert, once; a policy
   change still reaches every data plane within 2 s.
3. SIGKILL the etcd member the replicas' stores talk to (the first listed): nothing fails, and a policy change
   still reaches every data plane within 2 s.
4. cp1 and cp3 come back: every replica's ``gatectl dataplanes`` shows the whole fleet, the duties stay with cp2,
   and ``gatectl usage`` from every replica gives the same answer, which is exactly what the clients were told
   (as is the budget ledger's spent): usage batches resent after a failover were stored and settled once.
5. Everything is restarted (SIGTERM; the etcd member too): the state converges (one duty holder, every data
   plane on the current snapshot) and the usage and the ledger are unchanged.

The figures are printed (``-s`` shows them); the README's "what each failure costs" quotes them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness.fleet import Fleet
from bench.outage import KEY, REGION, TENANT, Load, policy
from controlplane.money.ledger import Ledger
from controlplane.store.etcd import EtcdStore
from tests.alerts.receiver import webhook_receiver
from tests.ha.etcd_cluster import Cluster
from tollway.budget_scopes import period_of

WEBHOOK_SECRET = "whsec-ha-test-secret"
SOFT = "budget.soft_threshold"
FLEET = ["dp-0", "dp-1", "dp-2"]


def _policy(webhook_url: str, soft_percent: int, *routes: str) -> list[dict[str, Any]]:
    """``bench.outage``'s policy (a mock provider, one priced model, the budgeted tenant), the tenant with an alert
    webhook and a soft threshold, and extra routes (a change every data plane must receive)."""
    docs = policy("0.2")
    tenant = next(d for d in docs if d["kind"] == "Tenant")
    tenant["spec"]["budget"]["softPercent"] = soft_percent
    tenant["spec"]["alerts"] = {"webhooks": [{"name": "ops", "url": f"{webhook_url}/ops", "events": [SOFT]}]}
    return [*docs, *({"apiVersion": "tollway.dev/v1", "kind": "Route", "metadata": {"name": r},
                      "spec": {"models": ["small"]}} for r in routes)]


def _get(fleet: Fleet, replica: int, path: str) -> Any:
    request = urllib.request.Request(fleet.admin_urls[replica] + path,
                                     headers={"Authorization": f"Bearer {fleet.admin_token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


async def _until(check: Callable[[], Any], within_s: float, what: str) -> float:
    """Seconds until ``check()`` (run in a thread) is true; fails after ``within_s``."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < within_s:
        try:
            last = await asyncio.to_thread(check)
        except OSError as e:  # a replica still starting
            last = e
        if last is True:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within_s} s (last: {last!r})")


def _connected_to(fleet: Fleet, replica: int) -> list[str]:
    """The data planes replica ``replica`` says are streaming from it now (its own live view)."""
    status = _get(fleet, replica, "/admin/v1/controlplane")
    return sorted(next(r for r in status["replicas"] if r["replica"] == status["replica"])["dataplanes"])


def _all_run(fleet: Fleet, replica: int, version: str) -> bool:
    items = _get(fleet, replica, "/admin/v1/dataplanes")["items"]
    return sorted(d["nodeId"] for d in items if d["connected"] and d["status"] == "ACK"
                  and d["version"] == version) == FLEET


def _runs_its_snapshot(fleet: Fleet, replica: int) -> bool:
    return _all_run(fleet, replica, _version(fleet, replica))


def _version(fleet: Fleet, replica: int) -> str:
    return str(next(s["version"] for s in _get(fleet, replica, "/admin/v1/snapshots")["items"]
                    if s["region"] == REGION))


async def _apply_and_reach(fleet: Fleet, replica: int, documents: list[dict[str, Any]], before: str,
                           figures: dict[str, float], what: str) -> None:
    """Apply through ``replica``; ``policy_after_<what>_s``: seconds from ``gatectl apply`` returning until every
    data plane ACKed the new snapshot, as that replica shows it (``apply_after_<what>_s``: the command's own)."""
    started = time.monotonic()
    await fleet.apply(documents, replica=replica)
    applied = time.monotonic()
    figures[f"apply_after_{what}_s"] = applied - started
    await _until(lambda: _version(fleet, replica) != before, 5, "the replica compiles the change")
    version = _version(fleet, replica)
    await _until(lambda: _all_run(fleet, replica, version), 10, f"every data plane runs {version}")
    figures[f"policy_after_{what}_s"] = time.monotonic() - applied


async def _gatectl_json(fleet: Fleet, replica: int, *args: str) -> Any:
    return json.loads(await fleet.gatectl(*args, "-o", "json", replica=replica))


async def _usage(fleet: Fleet, replica: int) -> tuple[int, int]:
    rows = (await _gatectl_json(fleet, replica, "usage", "--by", "tenant", "--tenant", TENANT))["rows"]
    return sum(int(r["requests"]) for r in rows), sum(int(r["costPico"]) for r in rows)


async def _spent(etcd_url: str) -> int:
    store = await EtcdStore.connect(etcd_url)
    try:
        return (await Ledger(store).state(period_of(time.time()), f"tenant/{TENANT}")).spent
    finally:
        await store.close()


async def _exact(fleet: Fleet, served: int, told: int) -> None:
    """The ledger and ``gatectl usage`` from every replica equal what the clients were told, once the spools
    drained."""
    deadline = time.monotonic() + 30
    while await _spent(fleet.etcd_url) != told and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert await _spent(fleet.etcd_url) == told  # nothing lost, nothing settled twice across the failovers
    for replica in range(fleet.replicas):  # one shared usage store: the same answer from every replica
        usage = await _usage(fleet, replica)
        while usage[0] < served and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            usage = await _usage(fleet, replica)
        assert usage == (served, told), (fleet.replica_ids[replica], usage, served, told)


async def test_killing_the_connected_replica_the_duty_holder_and_an_etcd_member_fails_nothing_and_loses_nothing(
        cluster: Cluster, postgres_url: str, tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, data_planes=3, lease_ttl_s=60, etcd_url=cluster.url, replicas=3,
                  usage_store=postgres_url, ha_ttl_s=4)
    fleet.env["TOLLWAY_WEBHOOK_SECRET_OPS"] = WEBHOOK_SECRET
    cp1, cp2, cp3 = 0, 1, 2
    load: Load | None = None
    sending: asyncio.Task[None] | None = None
    figures: dict[str, float] = {}
    async with webhook_receiver({"ops": WEBHOOK_SECRET.encode()}) as receiver:
        receiver.fail_first, receiver.fail_all = False, True
        try:
            await fleet.start_control_plane(cp3)
            await fleet.control_planes[cp3].wait_log(r"cp3 now holds the singleton duties")
            await fleet.start_control_plane(cp1)
            await fleet.start_control_plane(cp2)
            await fleet.apply(_policy(receiver.url, 100), replica=cp2)  # written through one, served by all
            secret = (await fleet.gatectl("keys", "create", KEY, "--tenant", TENANT, "--quiet", replica=cp2)).strip()
            await asyncio.gather(*(fleet.start_data_plane(i, REGION) for i in range(3)))
            load = Load([fleet.dp_url(i) for i in range(3)], secret, rate=20)
            await load.warm_up()
            warmed = len(load.outcomes)  # a request before the first grant may be refused: not under test

            # Every replica shows the whole fleet; the data planes stream from cp1; cp3 holds the duties.
            for replica in (cp1, cp2, cp3):
                await _until(partial(_runs_its_snapshot, fleet, replica), 10,
                             f"{fleet.replica_ids[replica]} shows the fleet")
            shown = await _gatectl_json(fleet, cp2, "dataplanes")
            assert sorted(d["nodeId"] for d in shown["items"] if d["connected"]) == FLEET
            status = await _gatectl_json(fleet, cp1, "controlplane", "status")
            assert status["dutyHolder"] == "cp3" and set(status["duties"].values()) == {"cp3"}, status
            assert {r["replica"] for r in status["replicas"]} == {"cp1", "cp2", "cp3"}, status
            assert _connected_to(fleet, cp1) == FLEET

            stop = asyncio.Event()
            sending = asyncio.create_task(load.run(stop))
            await asyncio.sleep(2)

            # 1. The replica the data planes stream from dies.
            before = _version(fleet, cp2)
            await fleet.kill_control_plane(cp1)
            figures["reconnected_s"] = await _until(lambda: _connected_to(fleet, cp2) == FLEET, 10,
                                                    "the data planes stream from cp2")
            # The change also lowers the soft threshold: the next settled usage crosses it (an alert).
            await _apply_and_reach(fleet, cp2, _policy(receiver.url, 1, "chat-2"), before, figures, "replica")

            # 2. The duty holder dies while the alert's delivery, its duty, is pending.
            await _until(lambda: bool(receiver.of(SOFT)), 15, "cp3 tries to deliver the alert")
            before = _version(fleet, cp2)
            await fleet.kill_control_plane(cp3)
            killed = time.monotonic()
            figures["duties_moved_s"] = await _until(
                lambda: _get(fleet, cp2, "/admin/v1/controlplane")["dutyHolder"] == "cp2", 10, "cp2 takes the duties")
            receiver.fail_all = False  # from now on only cp2 is alive: any delivery that succeeds is its
            status = await _gatectl_json(fleet, cp2, "controlplane", "status")
            assert status["dutyHolder"] == "cp2" and set(status["duties"].values()) == {"cp2"}, status
            await _until(lambda: any(r.answered == 204 for r in receiver.of(SOFT)), 15, "cp2 delivers the alert")
            figures["alert_delivered_s"] = time.monotonic() - killed
            await _apply_and_reach(fleet, cp2, _policy(receiver.url, 1, "chat-2", "chat-3"), before, figures, "holder")

            # 3. The etcd member the stores talk to dies.
            before = _version(fleet, cp2)
            cluster.kill(0)
            await _apply_and_reach(fleet, cp2, _policy(receiver.url, 1, "chat-2", "chat-3", "chat-4"), before,
                                   figures, "etcd_member")
            await asyncio.sleep(1)
            stop.set()
            await sending

            failed = [o for o in load.outcomes[warmed:] if o.cost_pico is None]
            assert not failed, failed[:5]
            assert len(load.outcomes) - warmed > 100
            figures["requests"] = len(load.outcomes) - warmed
            assert max(figures[f"policy_after_{what}_s"] for what in ("replica", "holder", "etcd_member")) <= 2.0, \
                figures
            assert figures["duties_moved_s"] < 10, figures
            delivered = [r for r in receiver.of(SOFT) if r.answered == 204]
            assert len(delivered) == 1, receiver.received  # once, by the new holder (the only replica alive)
            alerts = (await _gatectl_json(fleet, cp2, "alerts"))["items"]
            assert [(a["kind"], a["state"]) for a in alerts] == [(SOFT, "delivered")], alerts

            # 4. The killed replicas come back on the same store: they show the fleet (streaming from cp2), serve
            # the current policy, leave the duties where they are, and report the same usage.
            await fleet.start_control_plane(cp1)
            await fleet.start_control_plane(cp3)
            version = _version(fleet, cp2)
            for replica in (cp1, cp3):
                await _until(partial(_all_run, fleet, replica, version), 10,
                             f"{fleet.replica_ids[replica]}, restarted, shows the fleet")
                assert _version(fleet, replica) == version
            table = await fleet.gatectl("controlplane", "status", replica=cp1)
            assert "singleton duties held by: cp2" in table and "store: etcd healthy" in table, table
            told = sum(o.cost_pico or 0 for o in load.outcomes)
            served = sum(1 for o in load.outcomes if o.cost_pico is not None)
            await _exact(fleet, served, told)

            # 5. Restart everything: the state converges, and nothing is counted again.
            for server in [*fleet.dps.values(), *fleet.control_planes]:
                assert await server.stop(signal.SIGTERM) == 0, server.log_tail()
            await asyncio.to_thread(cluster.start, 0)
            await fleet.start_control_plane()
            await asyncio.gather(*(fleet.start_data_plane(i, REGION) for i in range(3)))

            def converged() -> bool:
                holders = {r["replica"] for r in _get(fleet, cp2, "/admin/v1/controlplane")["replicas"]
                           if r["holdsDuties"]}
                return len(holders) == 1 and all(_all_run(fleet, r, version) for r in (cp1, cp2, cp3))

            figures["converged_s"] = await _until(converged, 30, "the restarted fleet converges")
            assert all(_version(fleet, r) == version for r in (cp1, cp2, cp3))  # the same policy as before
            await _exact(fleet, served, told)
            print(f"\nHA figures: {json.dumps({k: round(v, 2) for k, v in figures.items()})}")
        finally:
            if sending is not None and not sending.done():
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
            if load is not None:
                await load.close()
            await fleet.close()
