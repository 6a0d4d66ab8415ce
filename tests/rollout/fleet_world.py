"""The fleet the staged-rollout tests drive (``Fleet``: a restartable control plane and three data planes in two
regions, eu: dp-eu-1, dp-eu-2; us: dp-us-1), started by ``running_fleet`` with the base policy applied; and what
the tests send and read through it: policies (``base_policy``, ``documents``, ``failing_change``), chat requests
(``chat``, ``send_until``), the history and the verified audit log."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
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
from tests.core.policy_docs import doc, model, policy_of, provider, route, tenant
from tests.dataplane.snapshots import CREDENTIAL_ENV
from tests.discovery.conftest import ADMIN_TOKEN, cp_settings, dp_settings, eventually, running_data_plane
from tests.fakes.openai_upstream import FakeOpenAI

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
        self._policy_dirs = 0

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

    async def gatectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``gatectl ARGS`` as a subprocess against this control plane (off the loop the servers run on)."""
        env = {**base_env(self.tmp), "TOLLWAY_CONTROL_PLANE": self.url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN}
        return await asyncio.to_thread(gatectl, *args, env=env)

    def policy_dir(self, docs: list[dict[str, Any]]) -> str:
        """A folder holding ``docs``, as a policy repository would."""
        self._policy_dirs += 1
        folder = self.tmp / f"policies-{self._policy_dirs}"
        folder.mkdir()
        (folder / "all.yaml").write_text(yaml.safe_dump_all(docs))
        return str(folder)

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


@asynccontextmanager
async def running_fleet(store: Store, tmp_path: Path) -> AsyncIterator[Fleet]:
    """The control plane and the data planes on ``store``, with the base policy applied."""
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


async def audit_verifies(fleet: Fleet) -> list[dict[str, Any]]:
    """The audit log's entries, newest first, once its hash chain verifies (what ``gatectl audit`` checks)."""
    status, answer = await fleet.admin("GET", "/admin/v1/audit")
    assert status == 200 and answer["verification"]["ok"], answer["verification"]
    items: list[dict[str, Any]] = answer["items"]
    return items


async def chat(dp: DataPlane, secret: str) -> int:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    async with aiohttp.ClientSession() as session, session.post(
            f"{dp.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        await resp.read()
        return resp.status

async def send_until(fleet: Fleet, key_of: dict[str, str], done: Callable[[dict[str, Any]], bool],
                     what: str) -> list[list[int]]:
    """Requests to every data plane, a round at a time, until the rollout status satisfies ``done``; the
    statuses each round got (dp-eu-1, dp-eu-2, dp-us-1)."""
    seen: list[list[int]] = []

    async def round_then_check() -> bool:
        if done(await fleet.status()):
            return True
        seen.append(list(await asyncio.gather(*(chat(fleet.dps[n], key_of[n]) for n in NODES))))
        return False
    await wait_async(round_then_check, what, within=30.0)
    return seen


def failing_change(upstream: FakeOpenAI) -> list[dict[str, Any]]:
    """The change moves eu's model to a new provider, which the test makes fail or answer slowly."""
    failing = doc("Provider", "openai-eu", type="openai", baseUrl=upstream.base_url, region="eu",
                  credential={"env": CREDENTIAL_ENV})
    return [*(d for d in base_policy() if d["metadata"]["name"] != "small-eu"), failing,
            model("small-eu", "openai-eu")]

