"""A data plane keeps serving its last good snapshot across restarts while the control plane is down."""

from __future__ import annotations

from pathlib import Path

from controlplane.store.base import Store
from dataplane.snapshot.disk_cache import FILE_NAME, SnapshotCache
from tests.core.policy_docs import api_key
from tests.discovery.conftest import (
    DataPlaneFactory,
    base_policy,
    eventually,
    put,
    readyz,
    running_control_plane,
)


async def test_restarted_without_control_plane_serves_from_disk(
    store: Store, tmp_path: Path, data_plane_factory: DataPlaneFactory, unreachable_target: str
) -> None:
    await put(store, *base_policy(), api_key("acme-web", "acme", digest="ab" * 32))
    state = tmp_path / "dp-state"
    async with running_control_plane(store, tmp_path / "cp") as cp:
        first = await data_plane_factory(cp.grpc_target, state_dir=state)
        version = cp.publisher.version("eu")
        await eventually(lambda: first.holder.version == version, what="snapshot installed")
        await eventually(lambda: (state / FILE_NAME).exists(), what="snapshot persisted")
        await first.stop()

    # The control plane is gone; the restarted data plane answers from disk at once.
    second = await data_plane_factory(unreachable_target, state_dir=state, node_id="dp-1-again")

    assert second.is_ready
    assert await readyz(second) == (200, {"status": "ready", "version": version})
    runtime = second.holder.runtime
    assert runtime is not None and bytes.fromhex("ab" * 32) in runtime.keys


async def test_without_control_plane_or_disk_it_is_not_ready(
    tmp_path: Path, data_plane_factory: DataPlaneFactory, unreachable_target: str
) -> None:
    dp = await data_plane_factory(unreachable_target, state_dir=tmp_path / "empty")

    await eventually(lambda: "UNAVAILABLE" in dp.discovery.last_error, what="connection refused")
    status, body = await readyz(dp)
    assert status == 503 and body == {"status": "no snapshot"}


async def test_damaged_or_foreign_persisted_snapshot_is_not_served(
    store: Store, tmp_path: Path, data_plane_factory: DataPlaneFactory, unreachable_target: str
) -> None:
    await put(store, *base_policy())
    eu, us = tmp_path / "eu", tmp_path / "us"
    async with running_control_plane(store, tmp_path / "cp") as cp:
        dp = await data_plane_factory(cp.grpc_target, state_dir=eu)
        await eventually(lambda: (eu / FILE_NAME).exists(), what="snapshot persisted")
        await dp.stop()
    snapshot = SnapshotCache(eu).load("eu")
    assert snapshot is not None and snapshot.version == dp.holder.version

    us.mkdir()
    (us / FILE_NAME).write_bytes((eu / FILE_NAME).read_bytes())  # persisted by a data plane of region eu
    data = bytearray((eu / FILE_NAME).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the payload
    (eu / FILE_NAME).write_bytes(bytes(data))

    damaged = await data_plane_factory(unreachable_target, state_dir=eu, node_id="damaged")
    foreign = await data_plane_factory(unreachable_target, state_dir=us, node_id="foreign", region="us")

    assert (await readyz(damaged))[0] == 503 and (await readyz(foreign))[0] == 503
