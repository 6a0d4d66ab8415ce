"""The data plane on a real socket, in front of fake OpenAI upstreams, driven by the official openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from dataplane.api.app import create_app
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot
from tests.fakes.openai_upstream import FakeOpenAI, fake_openai

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class World:
    url: str
    keys: Keys
    eu: FakeOpenAI
    eu2: FakeOpenAI
    us: FakeOpenAI
    holder: SnapshotHolder

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or self.keys.acme_all, max_retries=0,
                                  timeout=10)


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    async with fake_openai(CREDENTIAL) as eu, fake_openai(CREDENTIAL) as eu2, fake_openai(CREDENTIAL) as us:
        snap, keys = build_snapshot(eu.base_url, us.base_url, eu2.base_url)
        holder = SnapshotHolder()
        assert holder.install(snap) is None
        settings = DataPlaneSettings(port=0, max_body_bytes=64 * 1024)
        async with serving(create_app(settings, holder)) as url:
            yield World(url, keys, eu, eu2, us, holder)


async def test_chat_completion(world: World) -> None:
    raw = await world.client().chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == world.eu.reply
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-tollway-deployment"] == "gpt-eu"
    assert raw.headers["x-tollway-provider"] == "up-eu"
    assert raw.headers["x-tollway-attempts"] == "1"
    assert raw.headers["x-tollway-snapshot"] == "v-test-1"
    assert raw.headers["x-request-id"].startswith("req_")
    usage = completion.usage
    pico = usage.prompt_tokens * 150_000 + usage.completion_tokens * 600_000  # prices: pico-dollars per token
    assert raw.headers["x-tollway-cost-usd-micros"] == str((pico + 500_000) // 1_000_000)  # rounded for display
    whole, _, frac = raw.headers["x-tollway-cost-usd"].partition(".")
    assert int(whole) * 10**12 + int(frac.ljust(12, "0")) == pico  # exact
    sent = world.eu.requests[-1]
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.headers["Authorization"] == f"Bearer {CREDENTIAL}"
    assert "stream_options" not in sent.body


async def test_streaming_without_usage(world: World) -> None:
    stream = await world.client().chat.completions.create(model="chat", messages=HELLO, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == world.eu.reply
    # The gateway forced include_usage upstream, and dropped the usage-only chunk the client did not ask for.
    assert world.eu.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_streaming_with_usage(world: World) -> None:
    stream = await world.client().chat.completions.create(
        model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(world.eu.reply.split(" "))


async def test_raw_sse_framing(world: World) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            world.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {world.keys.acme_all}",
                                                         "x-request-id": "my-trace-1"},
            json={"model": "chat", "messages": HELLO, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["x-request-id"] == "my-trace-1"
        raw = await resp.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert all(e.startswith(b"data: {") for e in events[:-2])


async def test_models_lists_only_allowed_routes(world: World) -> None:
    models = [m.id async for m in world.client().models.list()]
    assert models == ["backup", "chat", "mock", "split"]
    assert [m.id async for m in world.client(world.keys.acme_mock).models.list()] == ["mock"]


async def test_mock_provider(world: World) -> None:
    completion = await world.client().chat.completions.create(model="mock", messages=HELLO, max_tokens=3)
    assert completion.model == "mock-1" and completion.object == "chat.completion"
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 3
    assert completion.choices[0].finish_reason == "length"
    stream = await world.client().chat.completions.create(
        model="mock", messages=HELLO, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "Say hello" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize(("status", "failover"), [(500, True), (503, True), (429, True)])
async def test_failover_on_upstream_errors(world: World, status: int, failover: bool) -> None:
    world.eu.fail_status, world.eu.fail_times = status, 1
    raw = await world.client().chat.completions.with_raw_response.create(model="backup", messages=HELLO)
    assert raw.headers["x-tollway-deployment"] == "gpt-eu2"
    assert raw.headers["x-tollway-attempts"] == "2"
    assert len(world.eu.requests) == 1 and len(world.eu2.requests) == 1


async def test_failover_on_connection_drop(world: World) -> None:
    world.eu.drop_connection = True
    raw = await world.client().chat.completions.with_raw_response.create(model="backup", messages=HELLO)
    assert raw.headers["x-tollway-deployment"] == "gpt-eu2"


async def test_all_attempts_fail_is_502(world: World) -> None:
    for fake in (world.eu, world.eu2):
        fake.fail_status, fake.fail_times = 500, 5
    with pytest.raises(openai.APIStatusError) as info:
        await world.client().chat.completions.create(model="backup", messages=HELLO)
    assert info.value.status_code == 502
    assert info.value.response.json()["error"]["code"] == "bad_gateway"
    assert info.value.response.headers["x-tollway-attempts"] == "2"


async def test_timeout_is_504(world: World) -> None:
    for fake in (world.eu, world.eu2):
        fake.delay_s = 3.0  # longer than the route's 1.5 s attempt timeout
    with pytest.raises(openai.APIStatusError) as info:
        await world.client().chat.completions.create(model="chat", messages=HELLO)
    assert info.value.status_code == 504


async def test_upstream_400_passes_through_without_failover(world: World) -> None:
    world.eu.fail_status, world.eu.fail_times = 400, 1
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().chat.completions.create(model="backup", messages=HELLO)
    assert info.value.response.json()["error"]["code"] == "bad_request"
    assert world.eu2.requests == []


async def test_upstream_rejecting_credential_never_leaks_it(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.eu.token = world.eu2.token = "sk-other"
    with pytest.raises(openai.APIStatusError) as info:
        await world.client().chat.completions.create(model="backup", messages=HELLO)
    assert info.value.status_code == 502
    assert CREDENTIAL not in info.value.response.text


async def test_stream_dying_before_first_event_fails_over(world: World) -> None:
    world.eu.die_after_chunks = 0
    stream = await world.client().chat.completions.create(model="backup", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == world.eu2.reply
    assert len(world.eu.requests) == 1 and len(world.eu2.requests) == 1


async def test_stream_dies_midway_ends_with_error_event(world: World) -> None:
    world.eu.die_after_chunks = 3
    stream = await world.client().chat.completions.create(model="backup", messages=HELLO, stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            received.append(chunk)
    assert len(received) == 3
    assert world.eu2.requests == []  # never fail over once bytes reached the client


@pytest.mark.parametrize(("key", "body", "status", "code"), [
    ("bad", {"model": "chat", "messages": HELLO}, 401, "invalid_api_key"),
    ("unknown", {"model": "chat", "messages": HELLO}, 401, "invalid_api_key"),
    ("acme_mock", {"model": "chat", "messages": HELLO}, 403, "model_not_allowed"),
    ("acme_all", {"model": "nope", "messages": HELLO}, 404, "model_not_found"),
    ("acme_all", {"model": "chat", "messages": []}, 400, None),
    ("acme_all", {"model": "chat", "messages": HELLO, "api_base": "http://evil.example"}, 400,
     "forbidden_parameter"),
])
async def test_error_statuses(world: World, key: str, body: dict[str, Any], status: int, code: str | None) -> None:
    secret = {"bad": "sk-nope", "unknown": "tw_" + "0" * 49}.get(key) or getattr(world.keys, key)
    async with aiohttp.ClientSession() as session, session.post(
            world.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == code
        assert resp.headers["x-tollway-snapshot"] == "v-test-1"
    assert world.eu.requests == []


async def test_body_too_large_is_413(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        await world.client().chat.completions.create(model="chat", messages=[{"role": "user", "content": "x" * 70_000}])
    assert info.value.status_code == 413


async def test_health_and_readiness() -> None:
    holder = SnapshotHolder()
    async with serving(create_app(DataPlaneSettings(port=0), holder)) as url, aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(url + "/readyz") as resp:
            assert resp.status == 503
        async with session.post(url + "/v1/chat/completions", json={}) as resp:
            assert resp.status == 503
        snap, _ = build_snapshot()
        assert holder.install(snap) is None
        async with session.get(url + "/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["version"] == "v-test-1"
