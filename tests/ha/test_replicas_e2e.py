"""Two control-plane replicas on one etcd, three data planes given both (``--control-plane cp1,cp2``), under
steady load from the openai SDK (never retried), all real processes started with ``gatectl``.

SIGKILL the replica every data plane is connected to (the first listed, which also holds the duties): not one
request fails, a policy change applied through the survivor reaches every data plane within 2 s, the survivor
takes the singleton duties within 10 s, every replica's ``gatectl dataplanes`` shows the whole fleet, and the
budget ledger's spent and the usage both replicas report (``gatectl usage``, from the shared PostgreSQL usage
store) are exactly what the clients were told: usage batches resent to the survivor are stored and settled once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.harness.fleet import ROOT, Server, base_env, free_port, gatectl_args
from bench.outage import KEY, REGION, TENANT, Load, policy
from controlplane.money.ledger import Ledger
from controlplane.store.etcd import EtcdStore
from tests.conftest import EtcdProcess
from tollway.budget_scopes import period_of

TOKENS = {"TOLLWAY_ADMIN_TOKEN": "admin-token-for-tests", "TOLLWAY_DATAPLANE_TOKEN": "dp-token-for-tests"}


def _gatectl(env: dict[str, str], admin_url: str, *args: str) -> str:
    done = subprocess.run(gatectl_args(*args), cwd=ROOT, env=env | {"TOLLWAY_CONTROL_PLANE": admin_url},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"gatectl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _admin_get(admin_url: str, path: str) -> Any:
    request = urllib.request.Request(admin_url + path,
                                     headers={"Authorization": f"Bearer {TOKENS['TOLLWAY_ADMIN_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


async def _until(check: Any, within_s: float, what: str) -> float:
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < within_s:
        last = await asyncio.to_thread(check)
        if last:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within_s} s (last: {last!r})")


async def test_killing_the_connected_replica_fails_nothing_and_the_survivor_takes_over(
        etcd_process: EtcdProcess, postgres_url: str, tmp_path: Path) -> None:
    env = base_env(tmp_path) | TOKENS
    admin_ports, grpc_ports = [free_port(), free_port()], [free_port(), free_port()]
    admins = [f"http://127.0.0.1:{p}" for p in admin_ports]
    cps = [Server(f"cp{i + 1}", gatectl_args(
        "controlplane", "serve", "--store", etcd_process.url, "--admin-port", str(admin_ports[i]),
        "--grpc-port", str(grpc_ports[i]), "--lease-ttl", "60", "--ha-ttl", "2", "--replica-id", f"cp{i + 1}",
        "--usage-store", postgres_url,
        "--state-dir", str(tmp_path / f"cp{i + 1}")), tmp_path, env) for i in range(2)]
    targets = ",".join(f"127.0.0.1:{p}" for p in grpc_ports)
    dp_ports = [free_port() for _ in range(3)]
    dps = [Server(f"dp-{i}", gatectl_args(
        "dataplane", "serve", "--control-plane", targets, "--region", REGION, "--port", str(dp_ports[i]),
        "--state-dir", str(tmp_path / f"dp-{i}"), "--node-id", f"dp-{i}", "--workers", "1"), tmp_path, env)
        for i in range(3)]
    load: Load | None = None
    sending: asyncio.Task[None] | None = None
    try:
        cps[0].start()
        await cps[0].wait_log(r"control plane ready")
        await cps[0].wait_log(r"cp1 now holds the singleton duties")
        cps[1].start()
        await cps[1].wait_log(r"control plane ready")
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump_all(policy("10"), sort_keys=False))
        _gatectl(env, admins[1], "apply", "-f", str(path))  # written through one replica, served by both
        secret = _gatectl(env, admins[1], "keys", "create", KEY, "--tenant", TENANT, "--quiet").strip()
        for dp in dps:
            dp.start()
        for dp in dps:
            await dp.wait_log(r"serving on")
        load = Load([f"http://127.0.0.1:{p}" for p in dp_ports], secret, rate=20)
        await load.warm_up()
        warmed = len(load.outcomes)  # a request before the first grant may be refused: not under test

        def fleet_seen_by(admin: str) -> bool:
            items = json.loads(_gatectl(env, admin, "dataplanes", "-o", "json"))["items"]
            return sorted(d["nodeId"] for d in items if d["connected"]) == ["dp-0", "dp-1", "dp-2"]

        await _until(lambda: fleet_seen_by(admins[1]), 10, "cp2 shows the fleet connected to cp1")
        status = json.loads(_gatectl(env, admins[1], "controlplane", "status", "-o", "json"))
        assert status["dutyHolder"] == "cp1", status
        assert {r["replica"] for r in status["replicas"]} == {"cp1", "cp2"}, status
        assert sorted(next(r for r in status["replicas"] if r["replica"] == "cp1")["dataplanes"]) == \
            ["dp-0", "dp-1", "dp-2"], status

        first_version = json.loads(_gatectl(env, admins[1], "dataplanes", "-o", "json"))["items"][0]["version"]
        stop = asyncio.Event()
        sending = asyncio.create_task(load.run(stop))
        await asyncio.sleep(3)
        await cps[0].stop(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.sleep(1)

        # A policy change through the survivor reaches every data plane within 2 s.
        path.write_text(yaml.safe_dump_all([*policy("10"), {
            "apiVersion": "tollway.dev/v1", "kind": "Route", "metadata": {"name": "chat-2"},
            "spec": {"models": ["small"]}}], sort_keys=False))
        _gatectl(env, admins[1], "apply", "-f", str(path))
        applied = time.monotonic()

        def all_run_the_new_policy() -> bool:
            items = _admin_get(admins[1], "/admin/v1/dataplanes")["items"]
            versions = {d["version"] for d in items if d["connected"] and d["status"] == "ACK"}
            return len([d for d in items if d["connected"]]) == 3 and len(versions) == 1 and \
                versions != {first_version}

        await _until(all_run_the_new_policy, 6, "every data plane runs the new policy")
        reached = time.monotonic() - applied

        took = await _until(lambda: json.loads(_gatectl(env, admins[1], "controlplane", "status", "-o", "json"))
                            ["dutyHolder"] == "cp2", 10, "cp2 takes the duties")
        await asyncio.sleep(2)
        stop.set()
        await sending

        failed = [o for o in load.outcomes[warmed:] if o.cost_pico is None]
        assert not failed, failed[:5]
        assert len(load.outcomes) > 80
        assert reached <= 2.0, reached
        assert time.monotonic() - killed < 30 and took < 10

        # The killed replica comes back on the same store: it serves the current policy, shows the whole fleet
        # (connected to cp2 now) and leaves the duties where they are.
        cps[0].start()
        await cps[0].wait_log(r"control plane ready")
        await _until(lambda: fleet_seen_by(admins[0]), 10, "cp1, restarted, shows the fleet")
        snapshots = [{s["region"]: s["version"] for s in _admin_get(a, "/admin/v1/snapshots")["items"]}
                     for a in admins]
        assert snapshots[0] == snapshots[1], snapshots
        status = json.loads(_gatectl(env, admins[0], "controlplane", "status", "-o", "json"))
        assert status["dutyHolder"] == "cp2" and {r["replica"] for r in status["replicas"]} == {"cp1", "cp2"}
        table = _gatectl(env, admins[0], "controlplane", "status")
        assert "singleton duties held by: cp2" in table and "store: etcd healthy" in table, table

        told = sum(o.cost_pico or 0 for o in load.outcomes)
        store = await EtcdStore.connect(etcd_process.url)
        try:
            ledger = Ledger(store)

            async def spent() -> int:
                return (await ledger.state(period_of(time.time()), f"tenant/{TENANT}")).spent

            deadline = time.monotonic() + 30
            while await spent() != told and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert await spent() == told  # nothing lost, nothing counted twice across the failover
        finally:
            await store.close()
        served = sum(1 for o in load.outcomes if o.cost_pico is not None)
        for admin in admins:  # the same answer from every replica: one shared usage store
            deadline = time.monotonic() + 30
            while True:
                rows = json.loads(_gatectl(env, admin, "usage", "--by", "tenant", "--tenant", TENANT, "-o",
                                           "json"))["rows"]
                usage = (sum(int(r["requests"]) for r in rows), sum(int(r["costPico"]) for r in rows))
                if usage[0] >= served or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert usage == (served, told), (admin, usage, served, told)

        # Restart everything: the state converges to what it was, and the duties have one holder again.
        for server in [*dps, *cps]:
            assert await server.stop(signal.SIGTERM) == 0
        for cp in cps:
            cp.start()
        for cp in cps:
            await cp.wait_log(r"control plane ready")
        for dp in dps:
            dp.start()

        def converged() -> bool:
            items = _admin_get(admins[0], "/admin/v1/dataplanes")["items"]
            version = _admin_get(admins[1], "/admin/v1/snapshots")["items"][0]["version"]
            holders = {r["replica"] for r in _admin_get(admins[0], "/admin/v1/controlplane")["replicas"]
                       if r["holdsDuties"]}
            return len(holders) == 1 and sorted(d["nodeId"] for d in items if d["connected"] and d["status"] == "ACK"
                                                and d["version"] == version) == ["dp-0", "dp-1", "dp-2"]

        await _until(converged, 30, "the restarted fleet converges")
        store = await EtcdStore.connect(etcd_process.url)
        try:
            assert (await Ledger(store).state(period_of(time.time()), f"tenant/{TENANT}")).spent == told
        finally:
            await store.close()
    finally:
        if sending is not None and not sending.done():
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        if load is not None:
            await load.close()
        for server in [*dps, *cps]:
            if server.is_running():
                await server.stop(signal.SIGTERM)
