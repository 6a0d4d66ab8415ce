"""Each adapter's ``send`` against its fake upstream over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from dataplane.core.validate import HubRequest, validate_chat
from dataplane.errors import ApiError, UpstreamFailure
from dataplane.snapshot.runtime import Deployment, Prices, Provider
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.anthropic import AnthropicAdapter
from dataplane.upstream.adapters.azure import AzureAdapter
from dataplane.upstream.client import UpstreamClient
from tests.fakes.anthropic_upstream import FakeAnthropic, fake_anthropic
from tests.fakes.azure_upstream import FakeAzure, fake_azure

AZURE_KEY = "azure-secret-key-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-secret-0123456789"
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def deployment(kind: str, base_url: str, model: str, credential: str | None, api_version: str = "2024-10-21",
               max_output_tokens: int = 512) -> Deployment:
    provider = Provider(name=f"{kind}-eu", type=kind, base_url=base_url, region="eu", connect_timeout_s=1.0,
                        read_timeout_s=2.0, api_version=api_version, mock_delay_ms=0, mock_tokens_per_second=0,
                        credential=credential, credential_env="UPSTREAM_KEY")
    return Deployment(name=f"{kind}-dep", provider=provider, upstream_model=model, capabilities=frozenset({"tools"}),
                      context_window=100_000, max_output_tokens=max_output_tokens, prices=Prices.of(1, 1, 1))


def chat(stream: bool = False, **fields: Any) -> HubRequest:
    payload = {"model": "chat", "messages": [{"role": "user", "content": "Hello there"}], "stream": stream, **fields}
    request = validate_chat(payload, len(orjson.dumps(payload)))
    assert not isinstance(request, ApiError)
    return request


async def collect(reply: Complete | Stream) -> list[dict[str, Any]]:
    assert isinstance(reply, Stream)
    return [orjson.loads(p) async for p in reply.events]


@pytest.fixture
async def session() -> AsyncIterator[UpstreamClient]:
    s = UpstreamClient()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def azure() -> AsyncIterator[FakeAzure]:
    async with fake_azure(AZURE_KEY) as fake:
        yield fake


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropic]:
    async with fake_anthropic(ANTHROPIC_KEY) as fake:
        yield fake


async def test_azure_complete(azure: FakeAzure, session: UpstreamClient) -> None:
    reply = await AzureAdapter(session).send(deployment("azure", azure.base_url, "gpt-4o-mini", AZURE_KEY),
                                             chat(), 5)
    assert isinstance(reply, Complete)
    body = orjson.loads(reply.body)
    assert body["choices"][0]["message"]["content"] == azure.reply
    assert body["usage"]["completion_tokens"] > 0
    sent = azure.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == AZURE_KEY and "Authorization" not in sent.headers
    assert "model" not in sent.body


async def test_azure_stream_drops_the_prompt_filter_chunk(azure: FakeAzure, session: UpstreamClient) -> None:
    chunks = await collect(await AzureAdapter(session).send(
        deployment("azure", azure.base_url, "gpt-4o-mini", AZURE_KEY), chat(stream=True), 5))
    assert azure.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(c["choices"] for c in chunks[:-1]), "every chunk but the usage one has a choice"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == azure.reply
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_azure_stream_tool_call(azure: FakeAzure, session: UpstreamClient) -> None:
    azure.tool_call = ("weather", '{"city":"Oslo"}')
    chunks = await collect(await AzureAdapter(session).send(
        deployment("azure", azure.base_url, "gpt-4o-mini", AZURE_KEY), chat(stream=True, tools=[TOOL]), 5))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "weather"
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"city":"Oslo"}'


@pytest.mark.parametrize(("setup", "kind", "status"), [
    ({"key": "wrong"}, "auth", 401),
    ({"model": "no-such-deployment"}, "unsupported", 404),
    ({"api_version": "1999-01-01"}, "unsupported", 404),
    ({"fail_status": 429}, "429", 429),
    ({"fail_status": 500}, "5xx", 500),
    ({"filter_prompt": True}, "4xx", 400),
])
async def test_azure_failures(azure: FakeAzure, session: UpstreamClient, setup: dict[str, Any], kind: str,
                              status: int) -> None:
    azure.fail_status = setup.get("fail_status", 0)
    azure.fail_times = 1 if azure.fail_status else 0
    azure.filter_prompt = setup.get("filter_prompt", False)
    dep = deployment("azure", azure.base_url, setup.get("model", "gpt-4o-mini"), setup.get("key", AZURE_KEY),
                     api_version=setup.get("api_version", "2024-10-21"))
    with pytest.raises(UpstreamFailure) as info:
        await AzureAdapter(session).send(dep, chat(), 5)
    assert (info.value.kind, info.value.status) == (kind, status)
    assert AZURE_KEY not in info.value.message and AZURE_KEY.encode() not in info.value.body
    if kind == "4xx":
        error = orjson.loads(info.value.body)["error"]
        assert error["code"] == "content_filter" and error["type"] == "invalid_request_error"
        assert error["param"] == "prompt" and "innererror" in error


async def test_azure_dies_mid_stream(azure: FakeAzure, session: UpstreamClient) -> None:
    azure.die_after_chunks = 3
    reply = await AzureAdapter(session).send(deployment("azure", azure.base_url, "gpt-4o-mini", AZURE_KEY),
                                             chat(stream=True), 5)
    with pytest.raises(UpstreamFailure) as info:
        await collect(reply)
    assert info.value.kind in ("protocol", "connect")


async def test_azure_unreachable(session: UpstreamClient) -> None:
    with pytest.raises(UpstreamFailure) as info:
        await AzureAdapter(session).send(deployment("azure", "http://127.0.0.1:9", "gpt-4o-mini", AZURE_KEY),
                                         chat(), 5)
    assert info.value.kind == "connect"


async def test_anthropic_complete(claude: FakeAnthropic, session: UpstreamClient) -> None:
    claude.cache_read = 40
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", ANTHROPIC_KEY)
    reply = await AnthropicAdapter(session, clock=lambda: 1234.5).send(
        dep, chat(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                  temperature=0.3, stop=["END"]), 5)
    assert isinstance(reply, Complete)
    body = orjson.loads(reply.body)
    assert body["object"] == "chat.completion" and body["created"] == 1234
    assert body["choices"][0]["message"]["content"] == claude.reply
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 40
    assert body["usage"]["prompt_tokens"] > 40
    sent = claude.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "Be brief." and sent.body["max_tokens"] == 512
    assert sent.body["stop_sequences"] == ["END"]


async def test_anthropic_tool_round_trip(claude: FakeAnthropic, session: UpstreamClient) -> None:
    claude.tool_call = ("weather", {"city": "Oslo"})
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", ANTHROPIC_KEY)
    adapter = AnthropicAdapter(session)
    reply = await adapter.send(dep, chat(tools=[TOOL], max_tokens=64), 5)
    assert isinstance(reply, Complete)
    message = orjson.loads(reply.body)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    call = message["message"]["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    # The client answers the call; the fake refuses any tool_use not answered by a tool_result.
    claude.tool_call = None
    followup = chat(tools=[TOOL], messages=[{"role": "user", "content": "Weather in Oslo?"}, message["message"],
                                            {"role": "tool", "tool_call_id": call["id"], "content": "-3C"}])
    reply = await adapter.send(dep, followup, 5)
    assert isinstance(reply, Complete)
    assert claude.requests[-1].body["messages"][-1]["content"][0]["tool_use_id"] == call["id"]


async def test_anthropic_stream_text_and_tools(claude: FakeAnthropic, session: UpstreamClient) -> None:
    claude.tool_call = ("weather", {"city": "Oslo"})
    dep = deployment("anthropic", claude.base_url, "claude-sonnet-4-20250514", ANTHROPIC_KEY)
    chunks = await collect(await AnthropicAdapter(session).send(dep, chat(stream=True, tools=[TOOL]), 5))
    assert claude.requests[-1].body["stream"] is True
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    calls = [tc for d in deltas for tc in d.get("tool_calls") or []]
    assert calls[0]["id"].startswith("toolu_") and calls[0]["function"]["name"] == "weather"
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Oslo"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 1


async def test_anthropic_max_tokens_is_length(claude: FakeAnthropic, session: UpstreamClient) -> None:
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", ANTHROPIC_KEY)
    chunks = await collect(await AnthropicAdapter(session).send(dep, chat(stream=True, max_tokens=2), 5))
    assert claude.requests[-1].body["max_tokens"] == 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(("setup", "kind", "status"), [
    ({"key": "wrong"}, "auth", 401),
    ({"model": "claude-unknown"}, "unsupported", 404),
    ({"fail_status": 429}, "429", 429),
    ({"fail_status": 529}, "5xx", 529),
    ({"fail_status": 500}, "5xx", 500),
    ({"empty_message": True}, "4xx", 400),
])
async def test_anthropic_failures(claude: FakeAnthropic, session: UpstreamClient, setup: dict[str, Any],
                                  kind: str, status: int) -> None:
    claude.fail_status = setup.get("fail_status", 0)
    claude.fail_times = 1 if claude.fail_status else 0
    dep = deployment("anthropic", claude.base_url, setup.get("model", "claude-3-5-haiku-20241022"),
                     setup.get("key", ANTHROPIC_KEY))
    # An empty user message becomes an empty turn, which the API refuses: the client's 4xx comes back.
    request = chat(messages=[{"role": "user", "content": ""}]) if setup.get("empty_message") else chat()
    with pytest.raises(UpstreamFailure) as info:
        await AnthropicAdapter(session).send(dep, request, 5)
    assert (info.value.kind, info.value.status) == (kind, status)
    assert ANTHROPIC_KEY not in info.value.message and ANTHROPIC_KEY.encode() not in info.value.body
    if kind == "4xx":
        error = orjson.loads(info.value.body)["error"]
        assert error["type"] == "invalid_request_error" and error["message"]


async def test_anthropic_untranslatable_is_a_client_error(claude: FakeAnthropic,
                                                          session: UpstreamClient) -> None:
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", ANTHROPIC_KEY)
    with pytest.raises(UpstreamFailure) as info:
        await AnthropicAdapter(session).send(dep, chat(n=2), 5)
    assert (info.value.kind, info.value.status) == ("4xx", 400)
    assert orjson.loads(info.value.body)["error"]["param"] == "n"
    assert claude.requests == [], "nothing was sent upstream"


@pytest.mark.parametrize("knob", ["die_after_events", "error_after_events"])
async def test_anthropic_fails_mid_stream(claude: FakeAnthropic, session: UpstreamClient, knob: str) -> None:
    setattr(claude, knob, 4)
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", ANTHROPIC_KEY)
    reply = await AnthropicAdapter(session).send(dep, chat(stream=True), 5)
    received: list[bytes] = []
    assert isinstance(reply, Stream)
    with pytest.raises(UpstreamFailure) as info:
        async for payload in reply.events:
            received.append(payload)
    assert received, "the stream had started"
    assert info.value.kind in (("5xx",) if knob == "error_after_events" else ("protocol", "connect"))


async def test_anthropic_missing_credential(claude: FakeAnthropic, session: UpstreamClient) -> None:
    dep = deployment("anthropic", claude.base_url, "claude-3-5-haiku-20241022", None)
    with pytest.raises(UpstreamFailure) as info:
        await AnthropicAdapter(session).send(dep, chat(), 5)
    assert info.value.kind == "auth" and "UPSTREAM_KEY" in info.value.message
    assert claude.requests == []
