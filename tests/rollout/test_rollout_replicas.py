"""Staged rollouts with two control-plane replicas on one etcd: cp1 (which holds the singleton duties) and cp2, in
this process, and three real data planes: dp-eu-1 streams from cp1, dp-eu-2 and dp-us-1 from cp2.

A step taken through either replica reaches the data planes of both within a second (each replica's publisher
watches the rollout record with the policy), a data plane outside the canary never runs the rollout's version,
not even for a moment, whichever replica it streams from, and the automatic decisions are taken once, by the
replica that holds the duties, also for a canary that streams from the other one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controlplane.policy.compile import build_snapshots
from controlplane.server import ControlPlane
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.core.policy_docs import api_key, policy_of
from tests.discovery.conftest import ADMIN_TOKEN, cp_settings, dp_settings, eventually, running_data_plane
from tests.rollout.fleet_world import base_policy, documents

CONNECTED_TO = {"dp-eu-1": "cp1", "dp-eu-2": "cp2", "dp-us-1": "cp2"}
REGION = {"dp-eu-1": "eu", "dp-eu-2": "eu", "dp-us-1": "us"}


def versions_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    built = build_snapshots(policy_of(*docs))
    assert isinstance(built, dict)
    return {region: snapshot.version for region, snapshot in built.items()}


class Replicas:
    def __init__(self, cps: dict[str, ControlPlane], dps: dict[str, DataPlane]) -> None:
        self.cps, self.dps = cps, dps
        self.seen: dict[str, list[str]] = {node: [] for node in dps}  # every version each data plane ran, in order

    async def admin(self, replica: str, method: str, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as session, session.request(
                method, self.cps[replica].admin_url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def sample(self) -> None:
        """Note every version change of every data plane, every few milliseconds, until cancelled."""
        while True:
            for node, dp in self.dps.items():
                if not self.seen[node] or self.seen[node][-1] != dp.holder.version:
                    self.seen[node].append(dp.holder.version)
            await asyncio.sleep(0.002)

    def running(self) -> dict[str, str]:
        return {node: dp.holder.version for node, dp in self.dps.items()}

    async def until(self, check: Callable[[dict[str, str]], bool], what: str, within: float) -> float:
        """Seconds until the data planes' versions satisfy ``check``; fails after ``within``."""
        return await eventually(lambda: check(self.running()), within=within, what=what)

    async def see_the_fleet(self, replica: str) -> None:
        """Wait until ``replica`` lists every data plane connected (the replicas share their registries every
        ``--ha-ttl`` / 3)."""
        start = time.monotonic()
        while True:
            status, shown = await self.admin(replica, "GET", "/admin/v1/dataplanes")
            assert status == 200
            if sorted(d["nodeId"] for d in shown["items"] if d["connected"]) == sorted(CONNECTED_TO):
                return
            assert time.monotonic() - start < 10, shown
            await asyncio.sleep(0.1)

    async def rollout(self, replica: str, docs: list[dict[str, Any]], canary: str, **extra: str) -> str:
        status, body = await self.admin(replica, "POST", "/admin/v1/rollout", {
            "documents": documents(docs), "canary": canary, "who": f"via-{replica}", **extra})
        assert status == 201, body
        rollout_id: str = body["rollout"]["id"]
        return rollout_id

    async def history(self, replica: str) -> list[dict[str, Any]]:
        status, body = await self.admin(replica, "GET", "/admin/v1/history")
        assert status == 200
        items: list[dict[str, Any]] = body["items"]
        return items


@pytest.fixture
async def replicas(etcd_store: Store, etcd_url: str, tmp_path: Path) -> AsyncIterator[Replicas]:
    async with AsyncExitStack() as stack:
        cps: dict[str, ControlPlane] = {}
        for name in ("cp1", "cp2"):  # cp1 first: it takes the duties
            cp = ControlPlane(cp_settings(tmp_path / name, store_url=etcd_url, replica_id=name, ha_ttl_seconds=2.0,
                                          rollout_tick_seconds=0.2))
            await cp.start()
            stack.push_async_callback(cp.stop)
            election = cp.election
            assert election is not None
            publisher = cp.publisher
            await eventually(lambda: publisher.is_ready, within=10, what=f"{name} published")  # noqa: B023 (awaited here)
            if name == "cp1":
                await eventually(election.is_held, within=10, what="cp1 holds the duties")
            cps[name] = cp
        replicas = Replicas(cps, {})
        status, _ = await replicas.admin("cp1", "POST", "/admin/v1/apply",
                                         {"documents": documents(base_policy()), "who": "alice"})
        assert status == 200
        expected = versions_of(base_policy())
        await eventually(lambda: all(cp.publisher.version(r) == v for cp in cps.values() for r, v in expected.items()),
                         within=10, what="the policy published by both replicas")
        for node, replica in CONNECTED_TO.items():
            dp = await stack.enter_async_context(running_data_plane(dp_settings(
                cps[replica].grpc_target, tmp_path / node, node_id=node, region=REGION[node],
                heartbeat_interval_s=0.5)))
            replicas.dps[node] = dp
        replicas.seen = {node: [] for node in replicas.dps}
        await replicas.until(lambda v: all(v[n] == expected[REGION[n]] for n in v), "the base policy everywhere", 10)
        for name in cps:
            await replicas.see_the_fleet(name)
        sampler = asyncio.create_task(replicas.sample())
        stack.callback(sampler.cancel)
        yield replicas


async def test_steps_through_either_replica_reach_every_data_plane_at_once_and_never_early(
        replicas: Replicas) -> None:
    base = versions_of(base_policy())

    # Started through cp1, canary eu: dp-eu-2 (on cp2) has it within a second; dp-us-1 (on cp2) never does.
    changed = base_policy(price="3")
    new = versions_of(changed)
    await replicas.rollout("cp1", changed, "eu")
    took = await replicas.until(lambda v: v["dp-eu-1"] == v["dp-eu-2"] == new["eu"], "the canary region", 5)
    assert took < 1.0, took
    status, shown = await replicas.admin("cp2", "GET", "/admin/v1/rollout")
    assert status == 200 and shown["rollout"]["who"] == "via-cp1"
    assert {r["nodeId"]: r["targetVersion"] for r in shown["dataplanes"]} == {
        "dp-eu-1": new["eu"], "dp-eu-2": new["eu"], "dp-us-1": base["us"]}
    await asyncio.sleep(0.5)  # what a replica that only polled the record would have sent meanwhile
    assert replicas.seen["dp-us-1"] == [base["us"]]

    # Promoted through cp2: dp-us-1 within a second.
    status, _ = await replicas.admin("cp2", "POST", "/admin/v1/rollout/promote", {"who": "carol"})
    assert status == 200
    took = await replicas.until(lambda v: v["dp-us-1"] == new["us"], "the promotion", 5)
    assert took < 1.0, took

    # Started through cp2, canary us, changing both regions; aborted through cp1: dp-eu-1 (on cp1) never ran it.
    again = base_policy(price="9")
    newer = versions_of(again)
    await replicas.rollout("cp2", again, "us")
    await replicas.until(lambda v: v["dp-us-1"] == newer["us"], "the canary us", 5)
    status, _ = await replicas.admin("cp1", "POST", "/admin/v1/rollout/abort", {"who": "dave", "reason": "no"})
    assert status == 200
    took = await replicas.until(lambda v: v["dp-us-1"] == new["us"], "the abort", 5)
    assert took < 1.0, took
    assert newer["eu"] not in replicas.seen["dp-eu-1"] + replicas.seen["dp-eu-2"]
    assert replicas.running() == {"dp-eu-1": new["eu"], "dp-eu-2": new["eu"], "dp-us-1": new["us"]}


async def test_automatic_decisions_are_taken_once_by_the_duty_holder(replicas: Replicas) -> None:
    # A NACK from a canary streaming from cp2 is acted on by cp1, the duty holder.
    broken = [*base_policy(price="2"), api_key("one", "amer", digest="ee" * 32),
              api_key("two", "amer", digest="ee" * 32)]
    nacked = await replicas.rollout("cp1", broken, "dataplane=dp-us-1")

    async def ended(replica: str, rollout_id: str) -> dict[str, Any]:
        start = time.monotonic()
        while time.monotonic() - start < 15:
            entries = await replicas.history(replica)
            if entries[0].get("rollout", {}).get("id") == rollout_id and entries[0]["action"] != "rollout-start":
                return entries[0]
            await asyncio.sleep(0.1)
        pytest.fail(f"{rollout_id} not decided")

    entry = await ended("cp2", nacked)
    assert (entry["action"], entry["who"], entry["rollout"]["replica"]) == ("rollout-abort", "control-plane", "cp1")
    assert "dp-us-1 rejected the snapshot" in entry["rollout"]["reason"]

    # A deadline, for a canary streaming from cp1, started through cp2: promoted once, by cp1.
    promoted = await replicas.rollout("cp2", base_policy(price="5"), "dataplane=dp-eu-1", promoteAfter="1s")
    entry = await ended("cp1", promoted)
    assert (entry["action"], entry["who"], entry["rollout"]["replica"]) == ("rollout-promote", "control-plane", "cp1")
    await asyncio.sleep(1.0)  # cp2 runs no decision: nothing more is written
    entries = await replicas.history("cp2")
    assert [e["action"] for e in entries[:4]] == ["rollout-promote", "rollout-start", "rollout-abort", "rollout-start"]
    started = next(e for e in entries if e["action"] == "rollout-start" and e["rollout"]["id"] == promoted)
    assert started["rollout"]["replica"] == "cp2" and started["who"] == "via-cp2"
