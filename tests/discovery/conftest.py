"""A real control plane (on the parametrized ``store``) and data planes on loopback, talking real gRPC.

Policy is written straight into the store under the real layout, as the admin API would, so these tests see
exactly what the publisher sees; what they assert is what an operator sees (``/readyz``, the admin API's
``dataplanes``) or what a data plane serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.policy.resources import dump_resource, parse_resource
from controlplane.server import ControlPlane
from controlplane.settings import ControlPlaneSettings
from controlplane.store.base import Store
from controlplane.store.layout import resource_key
from dataplane.serve import DataPlane
from dataplane.settings import DataPlaneSettings
from tests.conftest import free_port
from tests.core.policy_docs import model, provider, route, tenant
from tollway.backoff import Backoff

DP_TOKEN = "dp-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
FAST = Backoff(initial=0.05, maximum=0.2)  # reconnect quickly: tests wait on it


def base_policy() -> list[dict[str, Any]]:
    return [
        provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu"), route("chat", "small"),
        tenant("acme", "eu", projects=("web",)),
    ]


async def put(store: Store, *documents: dict[str, Any]) -> int:
    """Write documents in one transaction, as an apply would; returns the store revision."""
    puts = []
    for d in documents:
        r = parse_resource(d)
        puts.append((resource_key(r.kind, r.name), orjson.dumps(dump_resource(r))))
    return (await store.txn([], puts=puts)).revision


async def delete(store: Store, kind: str, name: str) -> None:
    await store.txn([], deletes=[resource_key(kind, name)])


async def eventually(check: Callable[[], bool], within: float = 5.0, what: str = "condition") -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails the test after ``within`` seconds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            pytest.fail(f"{what} not reached within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def readyz(dp: DataPlane) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{dp.url}/readyz") as resp:
        return resp.status, await resp.json()


async def admin_dataplanes(cp: ControlPlane) -> list[dict[str, Any]]:
    return await _admin_items(cp, "/admin/v1/dataplanes")


async def admin_snapshots(cp: ControlPlane) -> list[dict[str, Any]]:
    return await _admin_items(cp, "/admin/v1/snapshots")


async def dataplane_record(
    cp: ControlPlane, check: Callable[[dict[str, Any]], bool], within: float = 5.0
) -> dict[str, Any]:
    """The admin API's record of the only data plane, once ``check`` holds for it."""
    start = time.monotonic()
    while True:
        records = await admin_dataplanes(cp)
        if len(records) == 1 and check(records[0]):
            return records[0]
        if time.monotonic() - start > within:
            pytest.fail(f"data plane record never matched; last seen {records}")
        await asyncio.sleep(0.02)


async def _admin_items(cp: ControlPlane, path: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {cp.admin_token}"}
    async with aiohttp.ClientSession() as session, session.get(f"{cp.admin_url}{path}", headers=headers) as resp:
        assert resp.status == 200
        items: list[dict[str, Any]] = (await resp.json())["items"]
        return items


def cp_settings(state_dir: Path, **overrides: Any) -> ControlPlaneSettings:
    values: dict[str, Any] = {
        "state_dir": str(state_dir), "admin_port": 0, "grpc_port": 0,
        "admin_token": ADMIN_TOKEN, "dataplane_token": DP_TOKEN,
    }
    values.update(overrides)
    return ControlPlaneSettings(**values)


def dp_settings(control_plane: str, state_dir: Path, **overrides: Any) -> DataPlaneSettings:
    values: dict[str, Any] = {
        "port": 0, "region": "eu", "node_id": "dp-1", "control_plane": control_plane,
        "control_plane_token": DP_TOKEN, "state_dir": str(state_dir),
        # The test's clients, its control plane and its data planes share one event loop: its lag is all of
        # theirs, not a data plane's overload (tests/routing/test_overload.py tests the lag-driven limit).
        "overload_lag_s": 0.0,
    }
    values.update(overrides)
    return DataPlaneSettings(**values)


@asynccontextmanager
async def running_control_plane(store: Store, state_dir: Path, **overrides: Any) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(cp_settings(state_dir, **overrides), store=store)
    await cp.start()
    try:
        await eventually(lambda: cp.publisher.is_ready, what="first publish")
        yield cp
    finally:
        await cp.stop()


@asynccontextmanager
async def running_data_plane(settings: DataPlaneSettings) -> AsyncIterator[DataPlane]:
    dp = DataPlane(settings, backoff=FAST)
    await dp.start()
    try:
        yield dp
    finally:
        await dp.stop()


@pytest.fixture
async def control_plane(store: Store, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    await put(store, *base_policy())
    async with running_control_plane(store, tmp_path / "cp") as cp:
        yield cp


DataPlaneFactory = Callable[..., Awaitable[DataPlane]]


@pytest.fixture
async def data_plane_factory(tmp_path: Path) -> AsyncIterator[DataPlaneFactory]:
    """Start data planes (``control_plane`` target plus setting overrides); all are stopped at the end."""
    opened: list[AbstractAsyncContextManager[DataPlane]] = []

    async def start(control_plane: str, **overrides: Any) -> DataPlane:
        state_dir = overrides.pop("state_dir", tmp_path / f"dp-{overrides.get('node_id', 'dp-1')}")
        ctx = running_data_plane(dp_settings(control_plane, state_dir, **overrides))
        dp = await ctx.__aenter__()
        opened.append(ctx)
        return dp

    try:
        yield start
    finally:
        for ctx in reversed(opened):
            await ctx.__aexit__(None, None, None)


@pytest.fixture
def unreachable_target() -> Iterator[str]:
    """A loopback address nobody listens on: a control plane that is down."""
    yield f"127.0.0.1:{free_port()}"
