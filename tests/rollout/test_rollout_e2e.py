"""Staged rollouts end to end: a real control plane (on the parametrized store), three real data planes in two
regions (eu: dp-eu-1, dp-eu-2; us: dp-us-1) talking real gRPC, policy written and rollouts driven through the
admin HTTP API as ``gatectl`` does (and ``gatectl`` itself as a subprocess where a user would run it), requests
sent to the data planes over HTTP.

What is asserted is what an operator sees: the version each data plane runs (its ``/readyz``), the rollout
status, the history and audit chain, the answers a client gets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controlplane.policy.compile import build_snapshots
from controlplane.server import ControlPlane
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.cli.gatectl_process import base_env, gatectl
from tests.conftest import free_port
from tests.core.policy_docs import api_key, doc, model, policy_of, provider, route, tenant
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV
from tests.discovery.conftest import ADMIN_TOKEN, cp_settings, dp_settings, eventually, running_data_plane
from tests.fakes.openai_upstream import fake_openai

NODES = {"dp-eu-1": "eu", "dp-eu-2": "eu", "dp-us-1": "us"}
WAIT = 15.0


def base_policy(price: str = "1") -> list[dict[str, Any]]:
    return [
        provider("mock-eu", "eu", type_="mock"), provider("mock-us", "us", type_="mock"),
        model("small-eu", "mock-eu", inp=price), model("small-us", "mock-us", inp=price),
        route("chat", "small-eu", "small-us"),
        tenant("acme", "eu", "us"), tenant("euro", "eu"), tenant("amer", "us"),
    ]


def documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"source": f"policies/{d['kind']}-{d['metadata']['name']}.yaml", "document": d} for d in docs]


class Fleet:
    """The control plane (restartable on the same ports, store and state) and the three data planes."""

    def __init__(self, store: Store, tmp: Path, **cp_overrides: Any) -> None:
        self.store, self.tmp = store, tmp
        self.overrides = {"admin_port": free_port(), "grpc_port": free_port(), "rollout_tick_seconds": 0.1,
                          **cp_overrides}
        self.cp: ControlPlane | None = None
        self.dps: dict[str, DataPlane] = {}
        self._dp_contexts: list[AbstractAsyncContextManager[DataPlane]] = []

    async def start_control_plane(self) -> ControlPlane:
        self.cp = ControlPlane(cp_settings(self.tmp / "cp", **self.overrides), store=self.store)
        await self.cp.start()
        cp = self.cp
        await eventually(lambda: cp.publisher.is_ready, within=WAIT, what="first publish")
        return cp

    async def stop_control_plane(self) -> None:
        if self.cp is not None:
            await self.cp.stop()
            self.cp = None

    async def start_data_planes(self) -> None:
        assert self.cp is not None
        for node, region in NODES.items():
            ctx = running_data_plane(dp_settings(self.cp.grpc_target, self.tmp / node, node_id=node, region=region,
                                                 heartbeat_interval_s=0.5))
            self.dps[node] = await ctx.__aenter__()
            self._dp_contexts.append(ctx)

    async def stop_data_planes(self) -> None:
        for ctx in reversed(self._dp_contexts):
            await ctx.__aexit__(None, None, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.overrides['admin_port']}"

    async def admin(self, method: str, path: str, body: object = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as session, session.request(
                method, self.url + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def apply(self, docs: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply, and wait until the publisher serves it (so data planes started next get it first)."""
        status, body = await self.admin("POST", "/admin/v1/apply", {"documents": documents(docs), "who": "alice"})
        assert status == 200, body
        built = build_snapshots(policy_of(*docs))
        assert isinstance(built, dict)
        cp = self.cp
        assert cp is not None
        await eventually(lambda: all(cp.publisher.version(r) == s.version for r, s in built.items()), within=WAIT,
                         what="the applied policy published")
        return body

    async def start_rollout(self, docs: list[dict[str, Any]], canary: str, **extra: str) -> dict[str, Any]:
        status, body = await self.admin("POST", "/admin/v1/rollout", {
            "documents": documents(docs), "canary": canary, "who": "ci-bot", **extra})
        assert status == 201, body
        return body

    async def status(self) -> dict[str, Any]:
        status, body = await self.admin("GET", "/admin/v1/rollout")
        assert status == 200, body
        return body

    def versions(self) -> dict[str, str]:
        return {node: dp.holder.version for node, dp in self.dps.items()}

    async def settled(self, what: str, check: Callable[[dict[str, str]], bool] | None = None) -> dict[str, str]:
        """Every data plane runs what the control plane says it should (and ``check`` holds)."""
        async def ok() -> bool:
            rows = (await self.status())["dataplanes"]
            return (len(rows) == 3 and all(r["connected"] and r["targetVersion"] == r["runningVersion"] != ""
                                           for r in rows)
                    and all(self.dps[r["nodeId"]].holder.version == r["targetVersion"] for r in rows)
                    and (check is None or check(self.versions())))
        await wait_async(ok, what)
        return self.versions()


async def wait_async(check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            pytest.fail(f"{what} not reached within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def fleet(store: Store, tmp_path: Path) -> AsyncIterator[Fleet]:
    f = Fleet(store, tmp_path)
    async with AsyncExitStack() as stack:
        await f.start_control_plane()
        stack.push_async_callback(f.stop_control_plane)
        await f.apply(base_policy())
        await f.start_data_planes()
        stack.push_async_callback(f.stop_data_planes)
        yield f


async def history(fleet: Fleet) -> list[dict[str, Any]]:
    status, body = await fleet.admin("GET", "/admin/v1/history")
    assert status == 200
    items: list[dict[str, Any]] = body["items"]
    return items


async def chat(dp: DataPlane, secret: str) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    async with aiohttp.ClientSession() as session, session.post(
            f"{dp.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        await resp.read()
        return resp.status


async def test_canary_acks_others_keep_the_old_version_then_promote(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    assert before["dp-eu-1"] == before["dp-eu-2"] != before["dp-us-1"]
    status, created = await fleet.admin("POST", "/admin/v1/keys", {"name": "ci", "tenant": "acme", "who": "alice"})
    assert status == 201
    before = await fleet.settled("key everywhere", lambda v: v != before)
    for node in NODES:
        assert await chat(fleet.dps[node], created["secret"]) == 200

    started = await fleet.start_rollout(base_policy(price="3"), "eu")
    rollout_id = started["rollout"]["id"]
    during = await fleet.settled("canary on the new version", lambda v: v["dp-eu-1"] != before["dp-eu-1"])
    assert during["dp-eu-2"] == during["dp-eu-1"]  # the whole canary region
    assert during["dp-us-1"] == before["dp-us-1"]  # the others keep the old one
    shown = await fleet.status()
    assert shown["rollout"]["id"] == rollout_id and shown["rollout"]["canary"]["regions"] == ["eu"]
    rows = {r["nodeId"]: r for r in shown["dataplanes"]}
    assert rows["dp-eu-1"]["canary"] and not rows["dp-us-1"]["canary"]
    assert {r["status"] for r in rows.values()} == {"ACK"}

    # Policy applied during the rollout is refused, naming it; nothing is mixed in.
    status, refused = await fleet.admin("POST", "/admin/v1/apply", {
        "documents": documents(base_policy(price="5")), "who": "bob"})
    assert status == 409 and refused["error"]["type"] == "rollout_in_progress"
    assert rollout_id in refused["error"]["message"] and "gatectl rollout promote" in refused["error"]["message"]
    status, second = await fleet.admin("POST", "/admin/v1/rollout", {
        "documents": documents(base_policy(price="5")), "canary": "us"})
    assert status == 409 and rollout_id in second["error"]["message"]

    # A revocation goes through at once, to the canary and to the others.
    status, _ = await fleet.admin("POST", "/admin/v1/keys/ci/revoke", {"who": "alice"})
    assert status == 200
    revoked = await fleet.settled("revocation everywhere", lambda v: all(v[n] != during[n] for n in NODES))
    for node in NODES:
        assert await chat(fleet.dps[node], created["secret"]) == 401, node
    assert (await fleet.status())["rollout"]["id"] == rollout_id  # still in progress

    # What a user runs: gatectl rollout status, then promote.
    env = {**base_env(fleet.tmp), "TOLLWAY_CONTROL_PLANE": fleet.url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    shown_cli = await asyncio.to_thread(gatectl, "rollout", "status", env=env)
    assert shown_cli.returncode == 0, shown_cli.stderr
    assert f"rollout {rollout_id}" in shown_cli.stdout and "region eu" in shown_cli.stdout
    assert revoked["dp-us-1"] in shown_cli.stdout and revoked["dp-eu-1"] in shown_cli.stdout
    policy_dir = fleet.tmp / "policies"
    policy_dir.mkdir()
    (policy_dir / "all.yaml").write_text(yaml.safe_dump_all(base_policy(price="6")))
    refused_cli = await asyncio.to_thread(gatectl, "apply", "-f", str(policy_dir), env=env)
    assert refused_cli.returncode == 3 and f"rollout {rollout_id}" in refused_cli.stderr, refused_cli.stderr
    promoted = await asyncio.to_thread(gatectl, "rollout", "promote", "--as", "carol", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert "every data plane now gets" in promoted.stdout
    after = await fleet.settled("promoted everywhere", lambda v: v["dp-us-1"] != revoked["dp-us-1"])
    assert after["dp-eu-1"] == revoked["dp-eu-1"]  # the canary already ran it
    assert (await fleet.status())["rollout"] is None

    entries = await history(fleet)
    actions = [(e.get("action"), e["who"]) for e in entries[:3]]
    assert actions == [("rollout-promote", "carol"), ("revoke", "alice"), ("rollout-start", "ci-bot")]
    assert entries[0]["rollout"]["id"] == rollout_id and entries[0]["rollout"]["versions"]["us"]["others"] == \
        revoked["dp-us-1"]
    status, audit = await fleet.admin("GET", "/admin/v1/audit")
    assert audit["verification"]["ok"] and audit["items"][0]["action"] == "rollout-promote"
    assert (await fleet.admin("POST", "/admin/v1/rollout/promote", {}))[0] == 404  # nothing left to promote


async def test_a_nack_from_the_canary_aborts(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    # Valid policy, but the eu data planes refuse a snapshot in which two keys share a hash: a real NACK.
    broken = [*base_policy(price="2"), api_key("one", "euro", digest="ee" * 32),
              api_key("two", "euro", digest="ee" * 32)]
    started = await fleet.start_rollout(broken, "eu")
    rollout_id = started["rollout"]["id"]

    async def aborted() -> bool:
        return (await fleet.status())["rollout"] is None
    await wait_async(aborted, "automatic abort")
    entries = await history(fleet)
    assert entries[0]["action"] == "rollout-abort" and entries[0]["who"] == "control-plane"
    assert "rejected the snapshot" in entries[0]["rollout"]["reason"] and "same hash" in entries[0]["rollout"]["reason"]
    assert entries[0]["rollout"]["id"] == rollout_id
    assert {c["name"] for c in entries[0]["changes"]} >= {"one", "two", "small-eu"}  # the base restored
    after = await fleet.settled("everyone back on the base policy")
    assert after == before  # the canary never ran the refused one; the others never saw it


async def test_automatic_abort_on_an_error_spike(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    fleet = Fleet(store, tmp_path, rollout_min_requests=8, rollout_window_seconds=120.0)
    async with fake_openai(CREDENTIAL) as upstream, AsyncExitStack() as stack:
        upstream.fail_status, upstream.fail_times = 500, 1_000_000
        await fleet.start_control_plane()
        stack.push_async_callback(fleet.stop_control_plane)
        await fleet.apply(base_policy())
        await fleet.start_data_planes()
        stack.push_async_callback(fleet.stop_data_planes)
        without_key = await fleet.settled("base policy everywhere")
        # Tenants that stay in their region, so a canary request cannot fail over to the other one.
        secrets = {}
        for name, owner in (("eu-app", "euro"), ("us-app", "amer")):
            status, created = await fleet.admin("POST", "/admin/v1/keys", {"name": name, "tenant": owner})
            assert status == 201
            secrets[name] = created["secret"]
        key_of = {"dp-eu-1": secrets["eu-app"], "dp-eu-2": secrets["eu-app"], "dp-us-1": secrets["us-app"]}
        before = await fleet.settled("the key everywhere", lambda v: all(v[n] != without_key[n] for n in NODES))
        # The change moves eu's model to a new provider that answers 500: only the canary sees it.
        failing = doc("Provider", "openai-eu", type="openai", baseUrl=upstream.base_url, region="eu",
                      credential={"env": CREDENTIAL_ENV})
        bad = [*(d for d in base_policy() if d["metadata"]["name"] != "small-eu"), failing,
               model("small-eu", "openai-eu")]
        await fleet.start_rollout(bad, "eu", abortIf="error-rate>2%")
        await fleet.settled("canary on the new version", lambda v: v["dp-eu-1"] != before["dp-eu-1"])

        seen: list[list[int]] = []

        async def traffic_then_aborted() -> bool:
            if (await fleet.status())["rollout"] is None:
                return True
            seen.append(list(await asyncio.gather(*(chat(fleet.dps[n], key_of[n]) for n in NODES))))
            return False
        await wait_async(traffic_then_aborted, "automatic abort on the error spike", within=30.0)
        assert seen and all(codes[0] >= 500 and codes[2] == 200 for codes in seen[:-1])  # canary failing, us fine
        entries = await history(fleet)
        assert entries[0]["action"] == "rollout-abort" and entries[0]["who"] == "control-plane"
        assert "error rate" in entries[0]["rollout"]["reason"]
        await fleet.settled("everyone back on the base policy", lambda v: v["dp-eu-1"] == before["dp-eu-1"])
        assert await chat(fleet.dps["dp-eu-1"], secrets["eu-app"]) == 200


async def test_a_restarted_control_plane_resumes_the_rollout_and_its_deadline(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    await fleet.start_rollout(base_policy(price="4"), "dataplane=dp-eu-2", promoteAfter="4s")
    during = await fleet.settled("one data plane on the new version", lambda v: v["dp-eu-2"] != before["dp-eu-2"])
    assert during["dp-eu-1"] == before["dp-eu-1"] and during["dp-us-1"] == before["dp-us-1"]

    await fleet.stop_control_plane()
    await fleet.start_control_plane()  # same store, same ports: the data planes reconnect
    resumed = await fleet.settled("reconnected, still split")
    assert resumed == during
    assert (await fleet.status())["rollout"]["canary"]["dataplanes"] == ["dp-eu-2"]

    after = await fleet.settled("promoted by the deadline", lambda v: v["dp-us-1"] != before["dp-us-1"])
    assert after["dp-eu-1"] == after["dp-eu-2"] == during["dp-eu-2"]
    entries = await history(fleet)
    assert entries[0]["action"] == "rollout-promote" and entries[0]["who"] == "control-plane"
