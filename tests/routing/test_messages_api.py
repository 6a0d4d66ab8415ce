"""``POST /v1/messages``: the official anthropic SDK against the gateway, served by OpenAI and Anthropic upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic, fake_anthropic
from tests.routing.world import CREDENTIAL_ENV, UPSTREAM_KEY, Gateway, Upstream, gateway, new_key, snapshot
from tollway.pb import snapshot_pb2 as pb

ANTHROPIC_KEY = "sk-ant-routing-0123456789"


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Gateway, Upstream, FakeAnthropic]]:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    monkeypatch.setenv("TOLLWAY_TEST_ROUTING_ANTHROPIC", ANTHROPIC_KEY)
    eu1, eu2 = Upstream("eu1"), Upstream("eu2")
    await eu1.start()
    key = new_key()
    snap = snapshot(key, eu1.base_url, eu2.base_url, "http://127.0.0.1:9/v1")
    async with fake_anthropic(ANTHROPIC_KEY) as claude:
        snap.providers.add(name="claude", type="anthropic", base_url=claude.base_url, region="eu",
                           credential_env="TOLLWAY_TEST_ROUTING_ANTHROPIC", connect_timeout_s=0.5, read_timeout_s=1)
        snap.deployments.add(name="haiku", provider="claude", upstream_model="claude-3-5-haiku-20241022",
                             capabilities=["tools"], context_window=200000, max_output_tokens=8192,
                             prices=pb.Prices(input=1, output=1))
        snap.routes.add(name="claude", deployments=["haiku"], strategy="priority",
                        failover=pb.Failover(attempts=1, on=["5xx"]))
        try:
            async with gateway(snap, key) as gw:
                yield gw, eu1, claude
        finally:
            await eu1.kill()


def client(gw: Gateway, key: str | None = None) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key or gw.key, max_retries=0, timeout=10)


@pytest.mark.parametrize("model", ["chat", "claude"])
async def test_message(world: tuple[Gateway, Upstream, FakeAnthropic], model: str) -> None:
    gw, eu1, claude = world
    raw = await client(gw).messages.with_raw_response.create(
        model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Hello"}])
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == (eu1.fake.reply if model == "chat" else claude.reply)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-tollway-deployment"] == ("gpt-eu1" if model == "chat" else "haiku")
    if model == "chat":
        sent = eu1.fake.requests[-1].body
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."} and sent["max_tokens"] == 100


@pytest.mark.parametrize("model", ["chat", "claude"])
async def test_stream(world: tuple[Gateway, Upstream, FakeAnthropic], model: str) -> None:
    gw, eu1, claude = world
    kinds: list[str] = []
    async with client(gw).messages.stream(model=model, max_tokens=100,
                                          messages=[{"role": "user", "content": "Hello"}]) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.content[0].type == "text"
    assert final.content[0].text == (eu1.fake.reply if model == "chat" else claude.reply)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


async def test_tool_use_round_trip_through_an_openai_upstream(world: tuple[Gateway, Upstream, FakeAnthropic]) -> None:
    gw, eu1, _ = world
    await client(gw).messages.create(
        model="chat", max_tokens=50,
        tools=[{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather",
                                                     "input": {"city": "Paris"}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Sunny"}]}])
    sent = eu1.fake.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "weather"
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == "weather"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "Sunny"}


async def test_errors_are_in_anthropic_format(world: tuple[Gateway, Upstream, FakeAnthropic]) -> None:
    gw, eu1, _ = world
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await client(gw, "tw_not-a-real-key").messages.create(model="chat", max_tokens=10,
                                                               messages=[{"role": "user", "content": "Hi"}])
    assert auth.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": "incorrect API key provided"}}
    with pytest.raises(anthropic.NotFoundError):
        await client(gw).messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/messages", headers={"x-api-key": gw.key},
            json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    await eu1.kill()
    with pytest.raises(anthropic.APIStatusError) as down:
        await client(gw).messages.create(model="chat", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    assert down.value.status_code == 502 and down.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_bearer_auth_works_too(world: tuple[Gateway, Upstream, FakeAnthropic]) -> None:
    gw, _, _ = world
    async with aiohttp.ClientSession() as session, session.post(
            gw.url + "/v1/messages", headers={"Authorization": f"Bearer {gw.key}"},
            json={"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}) as resp:
        assert resp.status == 200
        assert (await resp.json())["type"] == "message"


async def test_upstream_dying_mid_stream_is_an_anthropic_error_event(
        world: tuple[Gateway, Upstream, FakeAnthropic]) -> None:
    gw, eu1, _ = world
    eu1.fake.die_after_chunks = 3
    with pytest.raises(anthropic.APIError):
        async with client(gw).messages.stream(model="chat", max_tokens=100,
                                              messages=[{"role": "user", "content": "Hello"}]) as stream:
            async for _ in stream:
                pass
