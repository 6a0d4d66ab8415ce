"""The official openai SDK through a real data plane to the fake Azure and Anthropic upstreams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionToolParam

from dataplane.api.app import create_app
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.adapters.chat_stream import read_chat_stream
from tests.fakes.anthropic_upstream import FakeAnthropic, fake_anthropic
from tests.fakes.azure_upstream import FakeAzure, fake_azure
from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

AZURE_KEY = "azure-e2e-secret-0123456789"
ANTHROPIC_KEY = "sk-ant-e2e-secret-0123456789"
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@dataclass
class World:
    url: str
    key: str
    azure: FakeAzure
    claude: FakeAnthropic

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)


def snapshot(azure_url: str, anthropic_url: str, key: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-adapters", region="eu")
    snap.tenants.add(name="acme", projects=["web"], regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme", hint="h")
    common = {"region": "eu", "connect_timeout_s": 1.0, "read_timeout_s": 2.0}
    snap.providers.add(name="az", type="azure", base_url=azure_url, api_version="2024-10-21",
                       credential_env="TOLLWAY_TEST_AZURE_KEY", **common)
    snap.providers.add(name="claude", type="anthropic", base_url=anthropic_url,
                       credential_env="TOLLWAY_TEST_ANTHROPIC_KEY", **common)
    prices = pb.Prices(input=1_000_000, output=2_000_000, cached_input=100_000)
    snap.deployments.add(name="az-mini", provider="az", upstream_model="gpt-4o-mini", capabilities=["tools"],
                         context_window=128000, max_output_tokens=4096, prices=prices)
    snap.deployments.add(name="az-missing", provider="az", upstream_model="no-such-deployment",
                         context_window=128000, max_output_tokens=4096, prices=prices)
    snap.deployments.add(name="haiku", provider="claude", upstream_model="claude-3-5-haiku-20241022",
                         capabilities=["tools"], context_window=200000, max_output_tokens=8192, prices=prices)
    failover = pb.Failover(attempts=2, attempt_timeout_s=3, total_timeout_s=5, on=["connect", "5xx", "429"])
    snap.routes.add(name="azure", deployments=["az-mini"], strategy="priority", failover=failover)
    snap.routes.add(name="claude", deployments=["haiku"], strategy="priority", failover=failover)
    snap.routes.add(name="claude-then-azure", deployments=["haiku", "az-mini"], strategy="priority",
                    failover=failover)
    snap.routes.add(name="misconfigured", deployments=["az-missing", "haiku"], strategy="priority",
                    failover=failover)
    return snap


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


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("TOLLWAY_TEST_AZURE_KEY", AZURE_KEY)
    monkeypatch.setenv("TOLLWAY_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
    key = generate_key()
    async with fake_azure(AZURE_KEY) as azure, fake_anthropic(ANTHROPIC_KEY) as claude:
        holder = SnapshotHolder()
        assert holder.install(snapshot(azure.base_url, claude.base_url, key)) is None
        async with serving(create_app(DataPlaneSettings(port=0), holder)) as url:
            yield World(url, key, azure, claude)


@pytest.mark.parametrize("model", ["azure", "claude"])
async def test_chat_completion(world: World, model: str) -> None:
    raw = await world.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    completion = raw.parse()
    expected = world.azure.reply if model == "azure" else world.claude.reply
    assert completion.choices[0].message.content == expected
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert int(raw.headers["x-tollway-cost-usd-micros"]) > 0
    if model == "claude":
        assert world.claude.requests[-1].body["system"] == "Be brief."


@pytest.mark.parametrize("model", ["azure", "claude"])
async def test_streaming(world: World, model: str) -> None:
    stream = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = await read_chat_stream(stream)
    assert text == (world.azure.reply if model == "azure" else world.claude.reply)
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_streaming_without_usage_has_a_choice_in_every_chunk(world: World) -> None:
    stream = await world.client().chat.completions.create(
        model="azure", messages=[{"role": "user", "content": "Hello"}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks), "Azure's prompt-filter chunk must not reach clients"


@pytest.mark.parametrize("model", ["azure", "claude"])
async def test_tool_call_round_trip(world: World, model: str) -> None:
    world.azure.tool_call = ("weather", '{"city":"Oslo"}')
    world.claude.tool_call = ("weather", {"city": "Oslo"})
    client = world.client()
    first = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert calls[0].function.name == "weather" and json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    world.azure.tool_call = None
    world.claude.tool_call = None
    second = await client.chat.completions.create(model=model, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0].id, "type": "function",
             "function": {"name": "weather", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "-3C"}])
    assert second.choices[0].finish_reason == "stop"


async def test_anthropic_overloaded_fails_over_to_azure(world: World) -> None:
    world.claude.fail_status, world.claude.fail_times = 529, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="claude-then-azure", messages=[{"role": "user", "content": "Hello"}])
    assert raw.parse().choices[0].message.content == world.azure.reply
    assert raw.headers["x-tollway-deployment"] == "az-mini" and raw.headers["x-tollway-attempts"] == "2"


async def test_unknown_azure_deployment_fails_over(world: World) -> None:
    raw = await world.client().chat.completions.with_raw_response.create(
        model="misconfigured", messages=[{"role": "user", "content": "Hello"}])
    assert raw.headers["x-tollway-deployment"] == "haiku"
    assert raw.parse().choices[0].message.content == world.claude.reply


async def test_azure_content_filter_reaches_the_client(world: World) -> None:
    world.azure.filter_prompt = True
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().chat.completions.create(model="azure", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "content_filter"
    assert AZURE_KEY not in str(info.value.body)


async def test_anthropic_error_mid_stream_reaches_the_sdk(world: World) -> None:
    # The events before the error may arrive in the same read as the error: then nothing reached the client yet
    # and the failure is an HTTP error (no candidate left to fail over to); otherwise an SSE error event.
    world.claude.error_after_events = 4
    with pytest.raises(openai.APIError):
        stream = await world.client().chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Hello"}], stream=True)
        async for _ in stream:
            pass


async def test_untranslatable_request_is_a_400(world: World) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().chat.completions.create(model="claude", n=2,
                                                     messages=[{"role": "user", "content": "Hello"}])
    assert "'n'" in info.value.message
    assert world.claude.requests == []
