"""The fake Bedrock Runtime's Converse and ConverseStream, driven by botocore's own client: if botocore signs,
parses and decodes what the fake serves, the gateway's adapter sees AWS's wire format."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError, EventStreamError, HTTPClientError  # type: ignore[import-untyped]
from urllib3.exceptions import ProtocolError

from tests.fakes.bedrock_client import (
    ACCESS_KEY,
    CLAUDE,
    CLAUDE_EU,
    REGION,
    WEATHER,
    call,
    error_code,
    make_client,
    path_of,
    signed_post,
    stream,
    user,
)
from tests.fakes.bedrock_upstream import (
    IMAGE_TOKENS,
    FakeBedrock,
    converse_input_tokens,
    output_tokens,
    text_tokens,
    word_pieces,
)

pytestmark = pytest.mark.usefixtures("no_aws_environment")  # no AWS configuration of the machine


# --- Converse ---------------------------------------------------------------------------------------------------

async def test_converse_text(fake: FakeBedrock) -> None:
    params: dict[str, Any] = {"modelId": CLAUDE_EU, "messages": [user("Hello there")],
                              "system": [{"text": "Be brief."}], "inferenceConfig": {"maxTokens": 100,
                                                                                    "temperature": 0.5}}
    response = await call(fake, "converse", **params)
    assert response["output"]["message"] == {"role": "assistant", "content": [{"text": fake.reply}]}
    assert response["stopReason"] == "end_turn"
    body = {key: value for key, value in params.items() if key != "modelId"}
    assert converse_input_tokens(body) == text_tokens("Be brief.") + 3 + text_tokens("Hello there")
    usage = {"inputTokens": converse_input_tokens(body), "outputTokens": text_tokens(fake.reply),
             "totalTokens": converse_input_tokens(body) + text_tokens(fake.reply), "cacheReadInputTokens": 0,
             "cacheWriteInputTokens": 0}
    assert response["usage"] == usage
    assert isinstance(response["metrics"]["latencyMs"], int)
    assert response["ResponseMetadata"]["RequestId"]
    [received] = fake.requests
    assert received.operation == "Converse" and received.model_id == CLAUDE_EU and received.auth_error is None
    assert received.path == f"/model/{CLAUDE_EU}/converse" and received.body == body
    assert "Authorization" not in received.headers and "X-Amz-Date" in received.headers
    assert {"host", "x-amz-date"} <= set(received.signed_headers)
    assert received.credential.startswith(f"{ACCESS_KEY}/") and received.credential.endswith(
        f"/{REGION}/bedrock/aws4_request")


async def test_converse_knobs_cut_force_and_cache(fake: FakeBedrock) -> None:
    fake.reply = "one two three four five six seven eight"
    cut = await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")], inferenceConfig={"maxTokens": 2})
    assert cut["stopReason"] == "max_tokens" and cut["output"]["message"]["content"] == [{"text": "one two "}]
    stopped = await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")],
                         inferenceConfig={"stopSequences": ["four"]})
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"] == [{"text": "one two three "}]
    fake.stop_reason, fake.cache_read, fake.cache_write = "guardrail_intervened", 100, 20
    forced = await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    assert forced["stopReason"] == "guardrail_intervened"
    usage = forced["usage"]
    assert usage["cacheReadInputTokens"] == 100 and usage["cacheWriteInputTokens"] == 20
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"] + 120


async def test_converse_image_block_counts_and_is_base64_on_the_wire(fake: FakeBedrock) -> None:
    image = {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n\x1a\nfake"}}}
    response = await call(fake, "converse", modelId=CLAUDE,
                          messages=[{"role": "user", "content": [{"text": "What is this?"}, image]}])
    assert response["usage"]["inputTokens"] == 3 + text_tokens("What is this?") + IMAGE_TOKENS
    sent = fake.requests[0].body["messages"][0]["content"][1]["image"]
    assert sent == {"format": "png", "source": {"bytes": "iVBORw0KGgpmYWtl"}}


async def test_converse_tool_use_then_tool_result_round(fake: FakeBedrock) -> None:
    tool_config = {"tools": [WEATHER], "toolChoice": {"any": {}}}
    first = await call(fake, "converse", modelId=CLAUDE, messages=[user("Weather in Paris?")],
                       toolConfig=tool_config)
    assert first["stopReason"] == "tool_use"
    [block] = first["output"]["message"]["content"]
    call_block = block["toolUse"]
    assert call_block["name"] == "weather" and call_block["input"] == {"city": "fake"}
    assert call_block["toolUseId"].startswith("tooluse_")
    assert first["usage"]["outputTokens"] == output_tokens(first["output"]["message"]["content"])

    result = {"toolResult": {"toolUseId": call_block["toolUseId"], "status": "success",
                             "content": [{"json": {"temperature": 21}}, {"text": "sunny"}]}}
    messages = [user("Weather in Paris?"), first["output"]["message"], {"role": "user", "content": [result]}]
    second = await call(fake, "converse", modelId=CLAUDE, messages=messages,
                        toolConfig={"tools": [WEATHER], "toolChoice": {"auto": {}}})
    assert second["stopReason"] == "end_turn"
    assert second["output"]["message"]["content"] == [{"text": fake.reply}]
    assert second["usage"]["inputTokens"] == converse_input_tokens(fake.requests[-1].body)


async def test_converse_tool_use_when_the_prompt_says_call(fake: FakeBedrock) -> None:
    second = {"toolSpec": {"name": "clock", "inputSchema": {"json": {"type": "object"}}}}
    fake.tool_input, fake.tool_preamble = {"zone": "UTC"}, "Let me check."
    response = await call(fake, "converse", modelId=CLAUDE_EU, messages=[user("Please call the clock tool")],
                          toolConfig={"tools": [WEATHER, second]})
    text, tool = response["output"]["message"]["content"]
    assert text == {"text": "Let me check."} and tool["toolUse"]["name"] == "clock"
    assert tool["toolUse"]["input"] == {"zone": "UTC"} and response["stopReason"] == "tool_use"
    plain = await call(fake, "converse", modelId=CLAUDE_EU, messages=[user("Hello")],
                       toolConfig={"tools": [WEATHER]})
    assert plain["stopReason"] == "end_turn"
    named = await call(fake, "converse", modelId=CLAUDE_EU, messages=[user("Hello")],
                       toolConfig={"tools": [WEATHER, second], "toolChoice": {"tool": {"name": "weather"}}})
    assert named["output"]["message"]["content"][1]["toolUse"]["name"] == "weather"


@pytest.mark.parametrize(("messages", "tool_config", "message"), [
    ([{"role": "assistant", "content": [{"text": "hi"}]}], None, "must start with a user message"),
    ([user("a"), user("b")], None, "must alternate between user and assistant"),
    ([user("   ")], None, "The text field in the ContentBlock object at messages.0.content.0 is blank"),
    ([{"role": "user", "content": []}], None, "The content field in the Message object at messages.0 is empty"),
    ([user("a"), {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "weather", "input": {}}}]},
      user("b")], {"tools": [WEATHER]}, "Expected toolResult blocks at messages.2.content for the following Ids: t1"),
    ([user("a"), {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "weather", "input": {}}}]},
      {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}]}], None,
     "The toolConfig field must be defined"),
    ([user("a")], {"tools": [WEATHER], "toolChoice": {"tool": {"name": "nope"}}}, "toolChoice.tool"),
])
async def test_converse_conversation_rules(fake: FakeBedrock, messages: list[dict[str, Any]],
                                           tool_config: dict[str, Any] | None, message: str) -> None:
    extra = {"toolConfig": tool_config} if tool_config else {}
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId=CLAUDE, messages=messages, **extra)
    assert error_code(caught.value) == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize(("body", "kind", "message"), [
    ({"messages": [user("hi")], "foo": 1}, "ValidationException", "extraneous key [foo] is not permitted"),
    ({"messages": [user("hi")], "inferenceConfig": {"max_tokens": 5}}, "ValidationException",
     "Value at 'inferenceConfig' failed to satisfy constraint: extraneous key [max_tokens]"),
    ({"messages": [user("hi")], "inferenceConfig": {"temperature": 2, "maxTokens": 0}}, "ValidationException",
     "2 validation errors detected"),
    ({"messages": [{"role": "robot", "content": [{"text": "hi"}]}]}, "ValidationException",
     "Value 'robot' at 'messages.1.member.role' failed to satisfy constraint: Member must satisfy enum value set"),
    ({"messages": [{"role": "user", "content": [{"text": "hi", "image": {"format": "png",
                                                                        "source": {"bytes": "aGk="}}}]}]},
     "ValidationException", "exactly one member set"),
    ({"messages": [{"role": "user"}]}, "ValidationException",
     "Value null at 'messages.1.member.content' failed to satisfy constraint: Member must not be null"),
    ({"messages": "hi"}, "SerializationException", "Expected list at 'messages'"),
])
async def test_converse_body_checked_against_the_service_model(fake: FakeBedrock, body: dict[str, Any], kind: str,
                                                               message: str) -> None:
    status, headers, raw = await signed_post(fake, path_of(CLAUDE, "converse"), orjson.dumps(body))
    assert status == 400 and headers["x-amzn-ErrorType"] == kind
    assert message in orjson.loads(raw)["message"]


async def test_converse_refuses_an_embedding_model_and_unknown_models(fake: FakeBedrock) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId="cohere.embed-english-v3", messages=[user("hi")])
    assert error_code(caught.value) == "ValidationException"
    with pytest.raises(ClientError) as missing:
        await call(fake, "converse", modelId="anthropic.claude-nonexistent-v1:0", messages=[user("hi")])
    assert error_code(missing.value) == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# --- ConverseStream -----------------------------------------------------------------------------------------------

async def test_converse_stream_text(fake: FakeBedrock) -> None:
    fake.cache_read = 7
    events = await stream(fake, modelId=CLAUDE_EU, messages=[user("Hello")])
    kinds = [next(iter(event)) for event in events]
    pieces = word_pieces(fake.reply)
    assert kinds == ["messageStart", *["contentBlockDelta"] * len(pieces), "contentBlockStop", "messageStop",
                     "metadata"]
    assert events[0] == {"messageStart": {"role": "assistant"}}
    deltas = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert "".join(d["delta"]["text"] for d in deltas) == fake.reply
    assert {d["contentBlockIndex"] for d in deltas} == {0}
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    metadata = events[-1]["metadata"]
    input_tokens = converse_input_tokens({"messages": [user("Hello")]})
    assert metadata["usage"] == {"inputTokens": input_tokens, "outputTokens": text_tokens(fake.reply),
                                 "totalTokens": input_tokens + text_tokens(fake.reply) + 7,
                                 "cacheReadInputTokens": 7, "cacheWriteInputTokens": 0}
    assert isinstance(metadata["metrics"]["latencyMs"], int)
    assert fake.requests[0].operation == "ConverseStream"


async def test_converse_stream_tool_use(fake: FakeBedrock) -> None:
    fake.tool_preamble = "Checking."
    fake.tool_input = {"city": "Paris", "days": 3, "note": "a longer argument to split"}
    events = await stream(fake, modelId=CLAUDE, messages=[user("Weather?")],
                          toolConfig={"tools": [WEATHER], "toolChoice": {"tool": {"name": "weather"}}})
    kinds = [next(iter(event)) for event in events]
    assert kinds[:4] == ["messageStart", "contentBlockDelta", "contentBlockStop", "contentBlockStart"]
    start = events[3]["contentBlockStart"]
    assert start["contentBlockIndex"] == 1 and start["start"]["toolUse"]["name"] == "weather"
    assert start["start"]["toolUse"]["toolUseId"].startswith("tooluse_")
    fragments = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                 if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == 1]
    assert len(fragments) > 1 and json.loads("".join(fragments)) == fake.tool_input
    assert events[-3] == {"contentBlockStop": {"contentBlockIndex": 1}}
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == output_tokens(
        [{"text": "Checking."}, {"toolUse": {"name": "weather", "input": fake.tool_input}}])


async def test_converse_stream_raw_frames_decode_with_botocore(fake: FakeBedrock) -> None:
    status, headers, raw = await signed_post(fake, path_of(CLAUDE, "converse-stream"),
                                             orjson.dumps({"messages": [user("Hi")]}))
    assert status == 200 and headers["Content-Type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    kinds = [m.headers[":event-type"] for m in messages]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
    for message in messages:
        assert message.headers[":message-type"] == "event"
        assert message.headers[":content-type"] == "application/json"
        payload = orjson.loads(message.payload)
        assert isinstance(payload["p"], str) and payload["p"]
    assert sum(m.prelude.total_length for m in messages) == len(raw)


async def test_converse_stream_exception_frame_mid_stream(fake: FakeBedrock) -> None:
    fake.error_after_events = 2
    with pytest.raises(EventStreamError) as caught:
        await stream(fake, modelId=CLAUDE, messages=[user("Hello")])
    assert error_code(caught.value) == "throttlingException"
    assert caught.value.response["Error"]["Message"] == "Too many requests, please wait before trying again."
    fake.stream_error = "modelStreamErrorException"
    status, _, raw = await signed_post(fake, path_of(CLAUDE, "converse-stream"),
                                       orjson.dumps({"messages": [user("Hi")]}))
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    *_, last = list(buffer)
    assert status == 200 and last.headers[":message-type"] == "exception"
    assert last.headers[":exception-type"] == "modelStreamErrorException"
    assert orjson.loads(last.payload)["originalStatusCode"] == 500


async def test_converse_stream_dies_mid_stream(fake: FakeBedrock) -> None:
    fake.die_after_events = 3
    seen: list[dict[str, Any]] = []

    def run() -> None:
        for event in make_client(fake).converse_stream(modelId=CLAUDE, messages=[user("Hello")])["stream"]:
            seen.append(event)

    with pytest.raises((HTTPClientError, ProtocolError)):  # botocore lets urllib3's error through mid-stream
        await asyncio.to_thread(run)
    assert [next(iter(e)) for e in seen] == ["messageStart", "contentBlockDelta", "contentBlockDelta"]


async def test_converse_stream_fails_before_the_stream(fake: FakeBedrock) -> None:
    fake.fail_status, fake.fail_times = 429, 1
    with pytest.raises(ClientError) as caught:
        await stream(fake, modelId=CLAUDE, messages=[user("Hello")])
    assert error_code(caught.value) == "ThrottlingException"
