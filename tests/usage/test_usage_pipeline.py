"""Data plane spool -> shipper -> gRPC Usage.Report -> DuckDB, over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.usage.db import UsageDB
from dataplane.record.spool import UsageSpool
from dataplane.sync.usage_shipper import UsageShipper
from tests.usage.conftest import TOKEN, ControlPlaneUsage, record
from tollway.pb import usage_pb2 as upb
from tollway.pb import usage_pb2_grpc as ugrpc


def fast_shipper(spool: UsageSpool, cp: ControlPlaneUsage, token: str = TOKEN) -> UsageShipper:
    return UsageShipper(spool, cp.target, token, linger=0.02, poll_interval=0.2, backoff_initial=0.05,
                        backoff_max=0.3)


async def drained(s: UsageShipper, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        await s.drained()


async def report(target: str, batches: list[upb.UsageBatch], token: str = TOKEN) -> list[upb.UsageAck]:
    """Speak Usage.Report directly, as a data plane would."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = ugrpc.UsageStub(channel).Report(iter(batches), metadata=(("authorization", f"Bearer {token}"),))
        return [ack async for ack in call]


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[UsageSpool]:
    s = UsageSpool.open(tmp_path / "spool", "dp-1")
    yield s
    s.close()


async def test_appended_records_reach_duckdb_exactly_once_within_a_second(
        spool: UsageSpool, control_plane: ControlPlaneUsage, usage_db: UsageDB) -> None:
    s = UsageShipper(spool, control_plane.target, TOKEN)  # default linger and poll: the real latency
    s.start()
    try:
        started = time.monotonic()
        for i in range(1_200):
            spool.append(record(i, cost=250))
        await drained(s)
        assert time.monotonic() - started < 1.5
        assert s.connected and s.backlog == 0
    finally:
        await s.stop()
    assert sorted(await usage_db.request_ids()) == sorted(f"req-{i}" for i in range(1_200))
    [row] = await usage_db.spend(["tenant"])
    assert (row.key, row.requests, row.cost_pico) == (("acme",), 1_200, 300_000 * 1_000_000)  # records in micros
    assert await usage_db.count_batches("dp-1") == 1  # 2,000 records per batch at most


async def test_records_spool_while_the_control_plane_is_down_and_ship_when_it_is_back(
        spool: UsageSpool, usage_db: UsageDB) -> None:
    cp = ControlPlaneUsage(usage_db)  # not started yet
    s = fast_shipper(spool, cp)
    s.start()
    try:
        for i in range(50):
            spool.append(record(i))
        await asyncio.sleep(0.5)
        assert s.backlog == 50 and not s.connected
        assert "UNAVAILABLE" in s.last_error
        assert await usage_db.request_ids() == []

        await cp.start()
        await drained(s)
        assert len(await usage_db.request_ids()) == 50

        await cp.stop()  # and once more, with a stream that was up
        for i in range(50, 80):
            spool.append(record(i))
        await asyncio.sleep(0.3)
        assert s.backlog == 30
        await cp.start()
        await drained(s)
    finally:
        await s.stop()
        await cp.stop()
    assert sorted(await usage_db.request_ids()) == sorted(f"req-{i}" for i in range(80))


async def test_a_replay_after_restart_never_double_counts(
        tmp_path: Path, control_plane: ControlPlaneUsage, usage_db: UsageDB) -> None:
    # A data plane sends batch 1 and dies before applying the ack: the control plane has it, the spool too.
    with UsageSpool.open(tmp_path / "spool", "dp-1") as spool:
        for i in range(30):
            spool.append(record(i))
        sent = spool.next_batch(0, max_records=20)  # smaller than the shipper's batches: the cut must persist
        assert sent is not None
        [ack] = await report(control_plane.target, [sent.parsed()])
        assert (ack.epoch, ack.sequence) == (spool.epoch, sent.sequence)

    spool = UsageSpool.open(tmp_path / "spool", "dp-1-after-restart")
    try:
        assert spool.backlog == 30
        spool.append(record(30))
        s = fast_shipper(spool, control_plane)
        s.start()
        try:
            await drained(s)
        finally:
            await s.stop()
    finally:
        spool.close()
    ids = await usage_db.request_ids()
    assert sorted(ids) == sorted(f"req-{i}" for i in range(31))
    assert await usage_db.count_batches("dp-1") == 3  # 20 (replayed), the other 10, the one appended later

    # The same batch once more (a retry from anywhere): acknowledged again, counted once.
    [again] = await report(control_plane.target, [sent.parsed()])
    assert again.sequence == sent.sequence
    [row] = await usage_db.spend(["tenant"])
    assert row.requests == 31


async def test_a_wrong_token_is_refused(
        spool: UsageSpool, control_plane: ControlPlaneUsage, usage_db: UsageDB) -> None:
    batch = upb.UsageBatch(node_id="dp-1", epoch="e", sequence=1, records=[record(0)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report(control_plane.target, [batch], token="not-the-token")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    s = fast_shipper(spool, control_plane, token="not-the-token")
    s.start()
    try:
        spool.append(record(1))
        for _ in range(150):  # a refused stream is retried with backoff; its error shows in the status
            if "UNAUTHENTICATED" in s.last_error:
                break
            await asyncio.sleep(0.02)
        assert "UNAUTHENTICATED" in s.last_error
        assert s.backlog == 1 and not s.connected
    finally:
        await s.stop()
    assert await usage_db.request_ids() == []


async def test_a_batch_without_its_key_is_refused(control_plane: ControlPlaneUsage, usage_db: UsageDB) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report(control_plane.target, [upb.UsageBatch(node_id="dp-1", epoch="", sequence=1)])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await usage_db.count_batches() == 0
