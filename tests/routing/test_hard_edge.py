"""The hard edge, upstream and client side: what a broken or hostile peer cannot do to a data plane.

Real sockets throughout: fake upstreams on loopback that send huge, garbage, endless and trickling answers, and a
data plane whose limits answer in the API's own format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
import pytest
from aiohttp import web

from dataplane.api.app import create_app
from dataplane.api.connection.edge import Edge
from dataplane.api.connection.edge_runner import EdgeRunner
from dataplane.api.connection.overload import Overload
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.upstream.adapters.wire import MAX_ANSWER_BYTES
from tests.routing.world import CREDENTIAL_ENV, chat_upstream, new_key, snapshot

CREDENTIAL = "sk-edge-upstream"

HELLO = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
COMPLETION = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class _AlwaysBusy(Overload):
    """The overload manager of a loop that counts as busy throughout, whatever is in flight."""

    def busy(self) -> bool:
        return True


@asynccontextmanager
async def data_plane(eu1: str, eu2: str, total_timeout_s: float = 1.5, **settings: object
                     ) -> AsyncIterator[tuple[str, str]]:
    """A data plane on a socket, its key; ``busy``: its loop counts as busy throughout (the lag monitor off,
    ``Overload.busy`` always true), so the request path's writes are held to the next turn (``dataplane.outbox``)."""
    busy = bool(settings.pop("busy", False))
    key = new_key()
    snap = snapshot(key, eu1, eu2, "http://127.0.0.1:9/v1")
    snap.routes[0].failover.total_timeout_s = total_timeout_s  # "chat": its total timeout bounds streams too
    if total_timeout_s > 1.5:  # an upstream may hold an answer that long (tests of requests in flight)
        snap.routes[0].failover.attempt_timeout_s = total_timeout_s
        for provider in snap.providers:
            provider.read_timeout_s = total_timeout_s
    holder = SnapshotHolder()
    assert holder.install(snap) is None
    if busy:
        settings["overload_lag_s"] = 0.0
    dp_settings = DataPlaneSettings(port=0, **settings)  # type: ignore[arg-type]
    edge = Edge.of(dp_settings)
    if busy:
        edge = dataclasses.replace(edge, overload=_AlwaysBusy(dp_settings.max_in_flight, 0.0))
    app = create_app(dp_settings, holder, edge=edge)
    # The server the data plane runs (``DataPlane.start``): aiohttp's, with the connection edge's limits.
    runner = EdgeRunner(app, edge=edge, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", key
    finally:
        await runner.cleanup()


async def healthy(request: web.Request) -> web.Response:
    return web.json_response(COMPLETION)


async def post(url: str, key: str, body: dict[str, object], headers: dict[str, str] | None = None
               ) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/chat/completions", data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})}) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.fixture(autouse=True)
def credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)


@pytest.mark.parametrize("garbage", ["not json", "a json array", "no choices", "huge"])
async def test_a_2xx_that_is_not_a_completion_fails_over_and_costs_nothing(garbage: str) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        if garbage == "not json":
            return web.Response(text="<html>proxy says hi</html>", content_type="text/html")
        if garbage == "a json array":
            return web.json_response([1, 2])
        if garbage == "no choices":
            return web.json_response({"id": "x", "object": "chat.completion"})
        resp = web.StreamResponse()  # a body past the answer limit, sent in pieces
        await resp.prepare(request)
        piece = b" " * (1024 * 1024)
        for _ in range(MAX_ANSWER_BYTES // len(piece) + 2):
            await resp.write(piece)
        return resp

    async with chat_upstream(broken) as bad, chat_upstream(healthy) as good, data_plane(bad, good) as (url, key):
        status, headers, body = await post(url, key, HELLO)
        assert status == 200, body
        assert headers["x-tollway-deployment"] == "gpt-eu2"
        assert headers["x-tollway-route-reason"] == "failover:protocol"
    async with chat_upstream(broken) as bad, data_plane(bad, bad) as (url, key):
        status, headers, body = await post(url, key, HELLO)
        assert status == 502  # every candidate broken: the API's own error, never the garbage
        error = orjson.loads(body)["error"]
        assert error["type"] and "provider" in error["message"]
        assert headers.get("x-tollway-cost-usd-micros") is None


async def test_an_endless_sse_event_is_cut_before_it_fills_memory() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {\"a\": \"")
        for _ in range(4):  # 4 MiB without a blank line: past the 1 MiB event limit
            await resp.write(b"x" * (1024 * 1024))
        return resp

    async with chat_upstream(endless) as bad, data_plane(bad, bad) as (url, key):
        status, _, body = await post(url, key, {**HELLO, "stream": True})
        assert status == 502 and orjson.loads(body)["error"]["message"]
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
            scraped = await r.text()
        # Both candidates' attempts (providers eu1 and eu2), each a protocol failure: the event was too large.
        failures = re.findall(r'^tollway_upstream_failures_total\{provider="(eu\d)",kind="(\w+)"\} (\d+)$', scraped,
                              re.M)
        assert sorted(failures) == [("eu1", "protocol", "1"), ("eu2", "protocol", "1")]


async def test_a_trickling_stream_ends_at_the_routes_total_timeout() -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
        for _ in range(1000):  # a chunk every 50 ms, for ever (well within the read timeout each time)
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await asyncio.sleep(0.05)
        return resp

    async with chat_upstream(trickle) as bad, data_plane(bad, bad) as (url, key):
        began = time.monotonic()
        status, _, body = await post(url, key, {**HELLO, "stream": True})
        took = time.monotonic() - began
    assert status == 200  # the stream had begun: it ends with an error event
    assert b"exceeded its total deadline" in body and not body.rstrip().endswith(b"[DONE]")
    assert took < 3.0, f"the stream lasted {took:.1f}s past a 1.5 s total timeout"


async def test_beyond_the_requests_in_flight_the_data_plane_sheds_at_once() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(COMPLETION)

    async with chat_upstream(slow) as up, data_plane(up, up, max_in_flight=2) as (url, key):
        held = [asyncio.create_task(post(url, key, HELLO)) for _ in range(2)]
        await asyncio.sleep(0.3)
        began = time.monotonic()
        status, headers, body = await post(url, key, HELLO)
        assert time.monotonic() - began < 0.5
        assert status == 503 and headers["Retry-After"] == "1"
        assert orjson.loads(body)["error"]["code"] == "overloaded"
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
            assert r.status == 200  # operations keep answering
        release.set()
        assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200]
        status, _, _ = await post(url, key, HELLO)
        assert status == 200  # recovered as soon as the load dropped


async def test_oversized_headers_are_refused_with_431_in_the_apis_format() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, key):
        big = {f"x-pad-{i}": "v" * 8000 for i in range(10)}  # 80 KB: past the 60 KiB total
        status, _, body = await post(url, key, HELLO, big)
        assert status == 431 and orjson.loads(body)["error"]["code"] == "headers_too_large"
        status, _, _ = await post(url, key, HELLO)
        assert status == 200
