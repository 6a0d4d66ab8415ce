"""Streams whose upstream sends every event in one read (the bench's fast upstream): the data plane answers
them in one go, with the same framing, usage handling and keep-alive reuse as streams that trickle in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench.fast_upstream import _Protocol as FastUpstream
from dataplane.api.app import create_app
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Keys, list[FastUpstream]]]:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    connections: list[FastUpstream] = []

    def accept() -> FastUpstream:
        connections.append(FastUpstream())
        return connections[-1]
    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
    upstream = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    snap, keys = build_snapshot(upstream, upstream, upstream)
    holder = SnapshotHolder()
    assert holder.install(snap) is None
    runner = web.AppRunner(create_app(DataPlaneSettings(port=0), holder), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", keys, connections
    finally:
        await runner.cleanup()
        server.close()


@pytest.mark.parametrize("include_usage", [False, True])
async def test_whole_stream_framing_and_usage(gateway: tuple[str, Keys, list[FastUpstream]],
                                              include_usage: bool) -> None:
    url, keys, connections = gateway
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": include_usage}}
    async with aiohttp.ClientSession() as session:
        for _ in range(3):  # the upstream connection is reused between streams
            async with session.post(url + "/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {keys.acme_all}"}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                raw = await resp.read()
            events = raw.split(b"\n\n")
            assert events[-1] == b"" and events[-2] == b"data: [DONE]"
            chunks = [orjson.loads(e[len(b"data: "):]) for e in events[:-2]]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
            assert text == "The gateway forwarded this answer from a fake upstream."
            usage_chunks = [c for c in chunks if not c["choices"]]
            if include_usage:
                assert len(usage_chunks) == 1 and usage_chunks[0]["usage"]["completion_tokens"] == 10
            else:
                assert usage_chunks == []
    assert len(connections) == 1
