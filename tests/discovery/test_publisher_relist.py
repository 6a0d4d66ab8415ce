"""The publisher never misses a change: after a compaction or a lost store it relists and watches again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.store.embedded import EmbeddedStore
from controlplane.store.open import open_store
from tests.conftest import EtcdProcess
from tests.core.policy_docs import api_key, tenant
from tests.discovery.conftest import DataPlaneFactory, base_policy, eventually, put, running_control_plane


async def test_compaction_while_watching_loses_no_change(tmp_path: Path, data_plane_factory: DataPlaneFactory) -> None:
    # History of one revision: any watcher that is not exactly caught up is compacted away.
    store = await EmbeddedStore.open(None, history_limit=1)
    try:
        await put(store, *base_policy())
        async with running_control_plane(store, tmp_path / "cp") as cp:
            dp = await data_plane_factory(cp.grpc_target)
            await eventually(lambda: dp.is_ready, what="first snapshot")
            listings = cp.publisher.listings

            # Concurrent writes all commit before the watcher next runs, so it falls behind the one revision of
            # history kept and is compacted; then an explicit compaction for good measure.
            await asyncio.gather(*(put(store, tenant(f"t{i}", "eu"), api_key(f"k{i}", f"t{i}", digest=f"{i:064x}"))
                                   for i in range(30)))
            await store.compact((await store.list("")).revision)

            def has_everything() -> bool:
                runtime = dp.holder.runtime
                return runtime is not None and len(runtime.keys) == 30 and len(runtime.tenants) == 31

            await eventually(has_everything, what="all 30 changes on the data plane")
            assert cp.publisher.listings > listings, "the watch was never compacted: this test tested nothing"
    finally:
        await store.close()


async def test_store_lost_and_back_loses_no_change(
    etcd_process: EtcdProcess, tmp_path: Path, data_plane_factory: DataPlaneFactory
) -> None:
    store = await open_store(etcd_process.url)
    writer = await open_store(etcd_process.url)
    try:
        await put(store, *base_policy())
        async with running_control_plane(store, tmp_path / "cp") as cp:
            dp = await data_plane_factory(cp.grpc_target)
            await eventually(lambda: dp.is_ready, what="first snapshot")
            listings = cp.publisher.listings

            etcd_process.stop()  # killed: the publisher's watch breaks
            await eventually(lambda: cp.publisher.last_error != "", within=20, what="store loss noticed")
            etcd_process.start()
            await put(writer, api_key("after", "acme", digest="12" * 32))

            def has_key() -> bool:
                runtime = dp.holder.runtime
                return runtime is not None and bytes.fromhex("12" * 32) in runtime.keys

            await eventually(has_key, within=20, what="the change made after the outage")
            assert cp.publisher.listings > listings
    finally:
        await writer.close()
        await store.close()
