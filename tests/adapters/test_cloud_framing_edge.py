"""The hard edge for the cloud framings: a broken or hostile Bedrock (AWS event stream) or Gemini (SSE) upstream
cannot make the data plane buffer without bound, pass garbage off as an answer, or hold a stream open for ever.

Real sockets: a raw fake on loopback answers each cloud's paths with the broken framing under test; the openai SDK
is the client. Every failure before the first byte is a 502 in OpenAI's format; a stream that had begun ends
with an error event at the route's total timeout.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from dataplane.api.app import create_app
from dataplane.api.connection.edge import Edge
from dataplane.api.connection.edge_runner import EdgeRunner
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.upstream.adapters.wire import MAX_ANSWER_BYTES
from dataplane.upstream.sse import MAX_EVENT_BYTES
from tests.fakes.bedrock_upstream import eventstream_frame
from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]
GEMINI_CHUNK = orjson.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "index": 0}]})


async def _pieces(request: web.Request, content_type: str, first: bytes, piece: bytes, times: int,
                  pause: float = 0.0) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": content_type})
    await resp.prepare(request)
    await resp.write(first)
    for _ in range(times):
        await resp.write(piece)
        await asyncio.sleep(pause)
    return resp


def huge_frame(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    # A valid prelude announcing a 20 MiB frame (botocore accepts up to 24 MiB), then its bytes.
    lengths = struct.pack(">II", 20 * 1024 * 1024, 0)
    prelude = lengths + struct.pack(">I", zlib.crc32(lengths))
    return _pieces(request, "application/vnd.amazon.eventstream", prelude, b"\0" * 65536, 80, 0.001)


def garbage_stream(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    return _pieces(request, "application/vnd.amazon.eventstream", b"<html>", b"not an event stream" * 10, 3)


def trickle_frames(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    delta = eventstream_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
    return _pieces(request, "application/vnd.amazon.eventstream",
                   eventstream_frame("messageStart", {"role": "assistant"}), delta, 1000, 0.05)


def endless_event(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    return _pieces(request, "text/event-stream", b'data: {"candidates": "', b"x" * 65536, 40)


def not_json_events(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    return _pieces(request, "text/event-stream", b"data: <html>\r\n\r\n", b"data: nope\r\n\r\n", 3)


def trickle_events(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    return _pieces(request, "text/event-stream", b"data: " + GEMINI_CHUNK + b"\r\n\r\n",
                   b"data: " + GEMINI_CHUNK + b"\r\n\r\n", 1000, 0.05)


async def not_json(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>a proxy says hi</html>", content_type="application/json")


def oversized(request: web.Request) -> Coroutine[Any, Any, web.StreamResponse]:
    return _pieces(request, "application/json", b'{"output": "', b" " * (1024 * 1024), MAX_ANSWER_BYTES // 2**20 + 2)


class Upstream:
    """Answers every path with ``handler``, set per test."""

    def __init__(self) -> None:
        self.handler: Handler = not_json

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        return await self.handler(request)


@asynccontextmanager
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[openai.AsyncOpenAI, Upstream]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFRAMINGTEST00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "framing-test-secret-key-0123456789abcdef")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TOLLWAY_TEST_GEMINI_KEY", "gemini-framing-test-key")
    upstream = Upstream()
    fake = web.Application()
    fake.router.add_route("*", "/{tail:.*}", upstream.handle)
    fake_runner = web.AppRunner(fake, shutdown_timeout=0.1)
    await fake_runner.setup()
    await web.TCPSite(fake_runner, "127.0.0.1", 0).start()
    origin = f"http://127.0.0.1:{fake_runner.addresses[0][1]}"

    key = generate_key()
    snap = pb.Snapshot(version="v-framing", region="eu")
    snap.tenants.add(name="acme", regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme", hint="h")
    timeouts = {"base_url": origin, "region": "eu", "connect_timeout_s": 1.0, "read_timeout_s": 3.0}
    snap.providers.add(name="bedrock-eu", type="bedrock", aws_region="eu-central-1", **timeouts)
    snap.providers.add(name="gemini-eu", type="gemini", credential_env="TOLLWAY_TEST_GEMINI_KEY", **timeouts)
    chat = {"context_window": 8192, "max_output_tokens": 256, "prices": pb.Prices(input=1_000_000, output=2_000_000)}
    snap.deployments.add(name="nova", provider="bedrock-eu", upstream_model="amazon.nova-lite-v1:0", **chat)
    snap.deployments.add(name="gemini", provider="gemini-eu", upstream_model="gemini-2.0-flash", **chat)
    failover = pb.Failover(attempts=1, attempt_timeout_s=3, total_timeout_s=1.5, on=["connect", "5xx"])
    for name in ("nova", "gemini"):
        snap.routes.add(name=name, kind="chat", deployments=[name], strategy="priority", failover=failover)
    holder = SnapshotHolder()
    assert holder.install(snap) is None
    settings = DataPlaneSettings(port=0)
    edge = Edge.of(settings)
    runner = EdgeRunner(create_app(settings, holder, edge=edge), edge=edge, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1", api_key=key,
                                max_retries=0, timeout=15)
    try:
        yield client, upstream
    finally:
        await client.close()
        await runner.cleanup()
        await fake_runner.cleanup()


ASK: Any = [{"role": "user", "content": "hi"}]

FAILS_BEFORE_THE_FIRST_BYTE = [
    ("nova", True, huge_frame, "an event larger than"),
    ("nova", True, garbage_stream, "malformed event stream"),
    ("nova", False, not_json, "provider"),
    ("nova", False, oversized, "larger than"),
    ("gemini", True, endless_event, "provider"),
    ("gemini", True, not_json_events, "provider"),
    ("gemini", False, not_json, "provider"),
    ("gemini", False, oversized, "larger than"),
]


@pytest.mark.parametrize(("model", "stream", "handler", "says"), FAILS_BEFORE_THE_FIRST_BYTE,
                         ids=[f"{m}-{h.__name__}" for m, _, h, _ in FAILS_BEFORE_THE_FIRST_BYTE])
async def test_a_broken_answer_is_a_502_in_openais_format_and_nothing_is_buffered_past_the_limits(
        monkeypatch: pytest.MonkeyPatch, model: str, stream: bool, handler: Handler, says: str) -> None:
    async with world(monkeypatch) as (client, upstream):
        upstream.handler = handler
        with pytest.raises(openai.APIStatusError) as caught:
            if stream:
                async for _ in await client.chat.completions.create(model=model, messages=ASK, stream=True):
                    pass
            else:
                await client.chat.completions.create(model=model, messages=ASK)
        assert caught.value.status_code == 502
        body = caught.value.body
        assert isinstance(body, dict) and says in str(body.get("message")), body


@pytest.mark.parametrize(("model", "handler"), [("nova", trickle_frames), ("gemini", trickle_events)])
async def test_a_trickling_stream_ends_at_the_routes_total_timeout(
        monkeypatch: pytest.MonkeyPatch, model: str, handler: Handler) -> None:
    async with world(monkeypatch) as (client, upstream):
        upstream.handler = handler
        began = time.monotonic()
        pieces = 0
        with pytest.raises(openai.APIError) as caught:
            async for chunk in await client.chat.completions.create(model=model, messages=ASK, stream=True):
                pieces += sum(1 for c in chunk.choices if c.delta.content)
        took = time.monotonic() - began
        assert pieces > 0  # it had begun: the error comes as an event, after the text so far
        assert "deadline" in str(caught.value)
        assert took < 3.5, f"the stream lasted {took:.1f}s past a 1.5 s total timeout"


def test_the_event_limit_is_below_what_botocore_would_buffer() -> None:
    assert MAX_EVENT_BYTES < 20 * 1024 * 1024  # the huge frame above is refused by our bound, not botocore's
