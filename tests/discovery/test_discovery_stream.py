"""The discovery stream end to end: store → publisher → gRPC → data plane, and what the registry reports."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest

from controlplane.push.discovery import DiscoveryServicer, Registry
from controlplane.push.publisher import Publisher
from controlplane.server import ControlPlane
from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.core.policy_docs import api_key, model, route
from tests.discovery.conftest import (
    DP_TOKEN,
    DataPlaneFactory,
    admin_dataplanes,
    admin_snapshots,
    dataplane_record,
    delete,
    eventually,
    put,
    readyz,
)
from tollway.grpc_options import CLIENT_OPTIONS
from tollway.pb import discovery_pb2 as dpb
from tollway.pb import discovery_pb2_grpc as dgrpc


async def test_data_plane_receives_its_region_snapshot_and_acks(
    control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target)
    expected = control_plane.publisher.version("eu")

    await eventually(lambda: dp.holder.version == expected, what="snapshot installed")

    assert await readyz(dp) == (200, {"status": "ready", "version": expected})
    record = await dataplane_record(control_plane, lambda r: r["status"] == "ACK")
    assert record["nodeId"] == "dp-1" and record["region"] == "eu" and record["version"] == expected
    assert record["error"] == "" and record["connected"] is True


async def test_store_change_reaches_the_data_plane_within_a_second(
    store: Store, control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target)
    await eventually(lambda: dp.is_ready, what="first snapshot")
    before = dp.holder.version

    await put(store, api_key("acme-web", "acme", digest="cd" * 32))
    took = await eventually(lambda: dp.holder.version != before, within=1.0, what="new snapshot on the data plane")

    runtime = dp.holder.runtime
    assert runtime is not None and bytes.fromhex("cd" * 32) in runtime.keys, f"took {took:.3f}s"


async def test_nack_keeps_the_old_snapshot_and_the_registry_shows_the_error(
    store: Store, control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target)
    await eventually(lambda: dp.is_ready, what="first snapshot")
    good = dp.holder.version

    # Two keys with one hash: the compiler lets it through, the data plane's validation refuses it.
    await put(store, api_key("one", "acme", digest="ee" * 32), api_key("two", "acme", digest="ee" * 32))
    rejected = await _next_version(control_plane, good)

    record = await dataplane_record(control_plane, lambda r: r["status"] == "NACK")
    assert record["version"] == good and "same hash" in str(record["error"])
    assert dp.holder.version == good and await readyz(dp) == (200, {"status": "ready", "version": good})
    assert control_plane.publisher.version("eu") == rejected

    await delete(store, "ApiKey", "two")  # fixed: the next version is accepted
    await eventually(lambda: dp.holder.version not in (good, rejected), what="fixed snapshot installed")
    record = await dataplane_record(control_plane, lambda r: r["status"] == "ACK")
    assert record["error"] == "" and record["version"] == dp.holder.version


async def _next_version(cp: ControlPlane, old: str) -> str:
    await eventually(lambda: cp.publisher.version("eu") != old, what="publish")
    return cp.publisher.version("eu")


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_wrong_or_missing_token_gets_nothing(
    control_plane: ControlPlane, data_plane_factory: DataPlaneFactory, token: str | None
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target, control_plane_token=token)

    await eventually(lambda: "UNAUTHENTICATED" in dp.discovery.last_error, what="UNAUTHENTICATED")
    assert not dp.is_ready and (await readyz(dp))[0] == 503
    assert await admin_dataplanes(control_plane) == []


async def test_wrong_token_stream_ends_before_any_snapshot(control_plane: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(control_plane.grpc_target, options=CLIENT_OPTIONS) as channel:
        call = dgrpc.DiscoveryStub(channel).StreamSnapshots(metadata=(("authorization", f"Bearer {DP_TOKEN}x"),))
        # The token is checked before anything is read or sent, so the call ends without a request written: a
        # client's write would race with that end (grpc then raises its own INTERNAL for the write, not the status).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_region_without_policy_gets_an_empty_valid_snapshot(
    control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target, region="ap-south")

    await eventually(lambda: dp.is_ready, what="empty snapshot installed")

    runtime = dp.holder.runtime
    assert runtime is not None and runtime.region == "ap-south" and not runtime.keys and not runtime.tenants
    snapshots = {s["region"]: s for s in await admin_snapshots(control_plane)}
    assert snapshots["ap-south"]["version"] == runtime.version and snapshots["ap-south"]["keys"] == 0


async def test_coalesces_a_burst_and_serves_the_last_state(
    store: Store, control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target)
    await eventually(lambda: dp.is_ready, what="first snapshot")

    for i in range(20):
        await put(store, model(f"m{i}", "mock-eu"), route(f"r{i}", f"m{i}"))

    await eventually(lambda: dp.holder.runtime is not None and len(dp.holder.runtime.routes) == 21,
                     what="all 20 new routes served")
    await eventually(lambda: control_plane.publisher.version("eu") == dp.holder.version)


async def test_disconnected_data_plane_is_reported(
    control_plane: ControlPlane, data_plane_factory: DataPlaneFactory
) -> None:
    dp = await data_plane_factory(control_plane.grpc_target, node_id="dp-gone")
    await dataplane_record(control_plane, lambda r: r["status"] == "ACK")
    started = time.time()

    await dp.stop()

    record = await dataplane_record(control_plane, lambda r: r["connected"] is False)
    assert record["nodeId"] == "dp-gone" and record["status"] == "ACK"
    assert str(record["lastSeen"]) >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))


class _Context:
    """The little of a gRPC servicer context the discovery servicer uses before it fails a call."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {DP_TOKEN}"),)

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise AssertionError(f"aborted: {code} {details}")


async def _serve(servicer: DiscoveryServicer, closed: asyncio.Event) -> None:
    """One call as gRPC runs it: the hello, then the requests end once ``closed`` is set (gRPC's reader, after the
    peer's cancel)."""
    async def requests() -> AsyncIterator[dpb.DiscoveryRequest]:
        yield dpb.DiscoveryRequest(node_id="dp-1", region="eu")
        await closed.wait()

    context: Any = _Context()
    async for _ in servicer.StreamSnapshots(requests(), context):
        pass


async def test_the_stream_ends_disconnected_wherever_the_peers_cancel_lands(tmp_path: Path) -> None:
    """What made the test above flaky. When a data plane cancels its stream (``dp.stop()``), the servicer learns it
    twice: its reader sees the requests end, and gRPC cancels the servicer's coroutine when the cancel reaches it
    from the core, a few loop iterations later or sooner. A cancel landing in an await of the stream's teardown
    skipped the disconnect, and the data plane stayed connected for good. Real gRPC cannot choose that iteration,
    so this drives the servicer as gRPC does and lands the cancel at each one in turn, until the stream has ended
    by itself before it."""
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        publisher = Publisher(store)  # never run: nothing to send, so the stream only waits for its end
        registry = Registry(publisher)
        servicer = DiscoveryServicer(publisher, registry, DP_TOKEN)
        stuck = []
        for iterations in itertools.count():
            closed = asyncio.Event()
            call = asyncio.create_task(_serve(servicer, closed))
            await eventually(lambda: (r := registry.record("dp-1")) is not None and r.connected, what="hello")
            closed.set()
            for _ in range(iterations):
                await asyncio.sleep(0)
            ended_first = call.done()
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            record = registry.record("dp-1")
            if record is not None and record.connected:
                stuck.append(iterations)
            if ended_first:
                break
        assert stuck == [], f"still connected when the cancel landed {stuck} loop iterations after the end"
    finally:
        await store.close()
