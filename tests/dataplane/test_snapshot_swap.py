"""Snapshot adoption under load: each request sees one snapshot, its runtime and its limits together.

A real data plane on a socket, a fake OpenAI upstream, and a swapper that keeps replacing the snapshot the way
discovery does (prepared on a worker thread, adopted on the loop) while requests stream their bodies in
slowly, so a swap lands between a request's arrival and its admission. Two snapshots differ in the tenant's
rate limit; every answer must carry the limit of the very snapshot it names in ``x-tollway-snapshot``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from dataplane.api.app import create_app
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV
from tests.fakes.openai_upstream import fake_openai
from tests.ratelimit.limits_snapshot import limited_snapshot
from tollway.pb import snapshot_pb2 as pb

LIMITS = {"v-swap-1": 100_000, "v-swap-2": 200_000}  # requests per minute, by snapshot version
BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})


async def slow_body() -> AsyncIterator[bytes]:
    yield BODY[:10]
    await asyncio.sleep(0.004)  # a swap or two lands here, after the request arrived, before it is admitted
    yield BODY[10:]


async def test_every_request_sees_one_snapshot_version_while_snapshots_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    async with fake_openai(CREDENTIAL) as upstream:
        first, keys = limited_snapshot(eu_url=upstream.base_url)
        snaps = []
        for version, rpm in LIMITS.items():  # the same keys, two versions of the tenant's limit
            snap = pb.Snapshot()
            snap.CopyFrom(first)
            snap.version = version
            next(t for t in snap.tenants if t.name == "acme").rate_limit.CopyFrom(
                pb.RateLimit(requests_per_minute=rpm))
            snaps.append(snap)
        gate = LimitsGate()
        holder = SnapshotHolder([gate])
        assert holder.install(snaps[0]) is None
        runner = web.AppRunner(create_app(DataPlaneSettings(port=0), holder, gate), shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
        swaps = 0
        stop = asyncio.Event()

        async def swapper() -> None:
            nonlocal swaps
            while not stop.is_set():
                prepared = await asyncio.to_thread(holder.prepare, snaps[(swaps + 1) % 2])
                assert not isinstance(prepared, str), prepared
                holder.adopt(prepared)
                swaps += 1
                await asyncio.sleep(0.001)

        seen: list[tuple[str, str]] = []
        try:
            swapping = asyncio.create_task(swapper())
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {keys.acme_all}",
                                                      "Content-Type": "application/json"}) as http:

                async def one() -> None:
                    async with http.post(url, data=slow_body()) as resp:
                        assert resp.status == 200, await resp.text()
                        seen.append((resp.headers["x-tollway-snapshot"],
                                     resp.headers["x-ratelimit-limit-requests"]))

                for _ in range(10):
                    await asyncio.gather(*(one() for _ in range(20)))
            stop.set()
            await swapping
        finally:
            await runner.cleanup()

    assert swaps > 20, "the snapshots never swapped under the requests: this test tested nothing"
    assert {version for version, _ in seen} == set(LIMITS), "requests saw only one of the two snapshots"
    mixed = [(version, limit) for version, limit in seen if int(limit) != LIMITS[version]]
    assert not mixed, f"{len(mixed)} of {len(seen)} requests saw one snapshot's runtime with another's limits"
