"""The official openai SDK's chat through a real data plane to the fake Bedrock Runtime on loopback: completions
and streams (Converse, ConverseStream, InvokeModel), tools, JSON schemas, images, stop and length, and the
failures (throttling, failover, refused or missing credentials, streams that die or carry an exception frame).

The data plane finds its AWS credentials the way it would in production, through botocore's standard chain, here
given environment variables only (no config file, no instance metadata: nothing reaches past loopback); the fake
checks every request's SigV4 signature with botocore. Every test also checks, at teardown, that neither the secret
key nor the session token appears in any log record (captured at DEBUG, botocore's included) — and the error
bodies a client sees are checked where failures are provoked.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionToolParam

from tests.adapters.bedrock_world import ACCESS_KEY, CLAUDE, NOVA, REGION, World, assert_no_secret
from tests.adapters.chat_stream import read_chat_stream
from tests.fakes.bedrock_upstream import text_tokens

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture
def world(bedrock_world: World) -> World:
    """``bedrock_world`` (conftest.py): the data plane in front of the fake Bedrock Runtime."""
    return bedrock_world


# --- chat ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "operation"), [("claude", "invoke"), ("nova", "Converse")])
async def test_chat_completion(world: World, model: str, operation: str) -> None:
    raw = await world.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == world.fake.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens == text_tokens(world.fake.reply)
    assert int(raw.headers["x-tollway-cost-usd-micros"]) > 0 and raw.headers["x-tollway-deployment"] == model
    received = world.fake.requests[-1]
    assert received.operation == operation and received.auth_error is None
    # SigV4 by botocore, scoped to the provider's region and Bedrock's signing name, with the session token.
    assert received.credential.startswith(f"{ACCESS_KEY}/") and received.credential.endswith(
        f"/{REGION}/bedrock/aws4_request")
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(received.signed_headers)
    if operation == "invoke":
        assert received.model_id == CLAUDE and received.path == f"/model/{CLAUDE}/invoke"
        assert received.body["anthropic_version"] == "bedrock-2023-05-31" and received.body["system"] == "Be brief."
        assert received.body["max_tokens"] == 1024  # the deployment's bound: what the budget reserved
    else:
        assert received.body["system"] == [{"text": "Be brief."}]
        assert received.body["inferenceConfig"] == {"maxTokens": 1024}
    record = world.spool.records[-1]
    assert record.deployment == model and record.output_tokens == completion.usage.completion_tokens
    assert record.usage_source in ("", "upstream")


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_streaming(world: World, model: str) -> None:
    stream = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = await read_chat_stream(stream)
    assert text == world.fake.reply and finish == "stop"
    assert usage is not None and usage.completion_tokens == text_tokens(world.fake.reply)
    assert world.operations() == ["ConverseStream"]
    assert world.fake.requests[-1].headers.get("Accept") == "application/vnd.amazon.eventstream"
    assert world.spool.records[-1].output_tokens == usage.completion_tokens


async def test_streaming_without_usage_has_a_choice_in_every_chunk(world: World) -> None:
    stream = await world.client().chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "Hello"}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks)
    assert world.spool.records[-1].input_tokens > 0, "usage is recorded even when the client did not ask for it"


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_tool_call_round_trip(world: World, model: str) -> None:
    world.fake.tool_input = {"city": "Oslo"}
    client = world.client()
    first = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Call weather for Oslo"}], tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function" and calls[0].id
    assert calls[0].function.name == "weather" and json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    second = await client.chat.completions.create(model=model, tools=TOOLS, messages=[
        {"role": "user", "content": "Call weather for Oslo"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0].id, "type": "function",
             "function": {"name": "weather", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "-3C"}])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == world.fake.reply
    sent = world.fake.requests[-1].body
    if model == "nova":
        assert sent["messages"][-1] == {"role": "user", "content": [
            {"toolResult": {"toolUseId": calls[0].id, "content": [{"text": "-3C"}]}}]}
        assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "weather"
    else:
        assert sent["messages"][-1]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_streamed_tool_call(world: World, model: str) -> None:
    world.fake.tool_input = {"city": "Bergen, Norway"}
    world.fake.tool_preamble = "Let me look."
    stream = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the weather in Bergen?"}], tools=TOOLS,
        tool_choice="required", stream=True)
    text, arguments, names, finish = "", "", "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            arguments += (call.function.arguments or "") if call.function else ""
            names += (call.function.name or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Let me look." and names == "weather" and finish == "tool_calls"
    assert json.loads(arguments) == {"city": "Bergen, Norway"}
    assert world.fake.requests[-1].body["toolConfig"]["toolChoice"] == {"any": {}}


async def test_json_schema_is_answered_through_a_forced_tool(world: World) -> None:
    world.fake.tool_input = {"city": "Oslo", "celsius": -3}
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
              "required": ["city", "celsius"]}
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "reading", "schema": schema}}
    client = world.client()
    for model in ("claude", "nova"):
        completion = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Oslo's temperature?"}],
            response_format=response_format)
        assert json.loads(completion.choices[0].message.content or "") == {"city": "Oslo", "celsius": -3}
        assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls
        assert world.fake.requests[-1].operation == "Converse"  # Anthropic models too: only Converse forces it
        assert world.fake.requests[-1].body["toolConfig"]["toolChoice"] == {"tool": {"name": "reading"}}
    stream = await client.chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "Oslo's temperature?"}], response_format=response_format,
        stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert json.loads(text) == {"city": "Oslo", "celsius": -3}


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_image(world: World, model: str) -> None:
    completion = await world.client().chat.completions.create(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert completion.choices[0].message.content == world.fake.reply
    content = world.fake.requests[-1].body["messages"][0]["content"]
    if model == "nova":
        assert content[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
        assert completion.usage is not None and completion.usage.prompt_tokens > 258  # the fake's image tokens
    else:
        assert content[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}


async def test_remote_image_is_a_400_before_any_upstream_call(world: World) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "base64 data URLs" in info.value.message
    assert world.fake.requests == []


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_stop_sequence(world: World, model: str) -> None:
    completion = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stop=["Bedrock"])
    assert completion.choices[0].message.content == "Hello from the fake "
    assert completion.choices[0].finish_reason == "stop"
    sent = world.fake.requests[-1].body
    assert (sent["inferenceConfig"]["stopSequences"] if model == "nova" else sent["stop_sequences"]) == ["Bedrock"]


@pytest.mark.parametrize(("model", "stream"), [("claude", False), ("nova", False), ("nova", True)])
async def test_max_tokens_is_length(world: World, model: str, stream: bool) -> None:
    client = world.client()
    messages: Any = [{"role": "user", "content": "Hello"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(model=model, messages=messages, max_tokens=2,
                                                                       stream=True)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    else:
        completion = await client.chat.completions.create(model=model, messages=messages, max_tokens=2)
        text, finish = completion.choices[0].message.content or "", completion.choices[0].finish_reason
    assert finish == "length" and text == world.fake.reply[:8]
    sent = world.fake.requests[-1].body
    assert (sent["inferenceConfig"]["maxTokens"] if model == "nova" else sent["max_tokens"]) == 2



# --- failures -----------------------------------------------------------------------------------------------------

async def test_throttling_is_a_429(world: World) -> None:
    world.fake.fail_status, world.fake.fail_times = 429, 1
    with pytest.raises(openai.RateLimitError) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert info.value.status_code == 429
    assert_no_secret(info.value.body)


@pytest.mark.parametrize("stream", [False, True])
async def test_throttling_fails_over_to_the_next_candidate(world: World, stream: bool) -> None:
    world.fake.fail_status, world.fake.fail_times = 429, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="nova-then-claude", messages=[{"role": "user", "content": "Hello"}], stream=stream)
    assert raw.headers["x-tollway-route-reason"] == "failover:429"
    assert raw.headers["x-tollway-deployment"] == "claude" and raw.headers["x-tollway-attempts"] == "2"
    answer = raw.parse()
    if isinstance(answer, openai.AsyncStream):
        text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
    else:
        text = answer.choices[0].message.content or ""
    assert text == world.fake.reply


async def test_a_throttling_exception_frame_before_any_event_fails_over(world: World) -> None:
    world.fake.error_after_events = 0  # every stream's very first frame is the exception: nothing was sent yet
    with pytest.raises(openai.RateLimitError) as info:
        await world.client().chat.completions.create(
            model="nova-then-claude", messages=[{"role": "user", "content": "Hello"}], stream=True)
    assert info.value.response.headers["x-tollway-attempts"] == "2", "the second candidate was tried"
    assert [r.model_id for r in world.fake.requests] == [NOVA, CLAUDE]


async def test_model_not_enabled_fails_over(world: World) -> None:
    world.fake.models.discard("amazon.nova-pro-v1:0")  # ResourceNotFoundException: a fault of policy
    raw = await world.client().chat.completions.with_raw_response.create(
        model="disabled-then-nova", messages=[{"role": "user", "content": "Hello"}])
    assert raw.headers["x-tollway-deployment"] == "nova"
    assert raw.headers["x-tollway-route-reason"] == "failover:unsupported"


@pytest.mark.parametrize(("status", "error"), [(503, openai.InternalServerError), (424, openai.InternalServerError)])
async def test_unavailable_is_a_502(world: World, status: int, error: type[openai.APIStatusError]) -> None:
    world.fake.fail_status, world.fake.fail_times = status, 2
    with pytest.raises(error) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert info.value.status_code == 502


async def test_validation_error_reaches_the_client(world: World) -> None:
    world.fake.fail_status, world.fake.fail_times = 400, 1
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert "Malformed input request" in info.value.message
    assert info.value.code == "ValidationException"


async def test_wrong_secret_is_a_502_naming_no_credential(world: World) -> None:
    world.fake.secret_key = "the-secret-the-fake-expects-instead"
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            await world.client().chat.completions.create(
                model="nova", messages=[{"role": "user", "content": "Hello"}], stream=stream)
        assert info.value.status_code == 502
        assert "AWS credentials were refused" in info.value.message
        assert "InvalidSignatureException" in info.value.message
        # The fake's answer quotes the canonical request (the session token included): none of it comes back.
        assert_no_secret(info.value.body, info.value.message, info.value.response.text)
    assert world.fake.requests[-1].auth_error == "InvalidSignatureException"


async def test_expired_session_token_is_a_502(world: World) -> None:
    world.fake.token_expired = True
    with pytest.raises(openai.InternalServerError) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert "ExpiredTokenException" in info.value.message
    assert_no_secret(info.value.body)
    world.fake.token_expired = False


async def test_no_credentials_on_the_data_plane(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(openai.InternalServerError) as info:
        await world.client().chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert "no AWS credentials on this data plane" in info.value.message
    assert world.fake.requests == []


async def test_stream_dies_mid_way(world: World) -> None:
    world.fake.event_delay_s = 0.02  # the first events reach the client before the socket closes
    world.fake.die_after_events = 4
    stream = await world.client().chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "Hello"}], stream=True)
    text = ""
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text and world.fake.reply.startswith(text)
    record = world.spool.records[-1]
    assert record.deployment == "nova" and record.usage_source == "estimated-aborted"
    assert record.output_tokens > 0 and record.cost_pico > 0


@pytest.mark.parametrize("exception", ["modelStreamErrorException", "throttlingException", "validationException"])
async def test_exception_frame_mid_stream(world: World, exception: str) -> None:
    world.fake.event_delay_s = 0.02
    world.fake.error_after_events, world.fake.stream_error = 4, exception
    stream = await world.client().chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "Hello"}], stream=True)
    with pytest.raises(openai.APIError) as info:
        async for _ in stream:
            pass
    assert_no_secret(info.value.message, info.value.body)
    assert world.spool.records[-1].usage_source == "estimated-aborted"
