"""The fake Bedrock Runtime driven by botocore's own client (the reference SDK, run in a thread since it is
synchronous): if botocore signs, parses and decodes what the fake serves, the gateway's adapter sees AWS's wire
format. Raw signed requests (botocore's SigV4Auth, sent with aiohttp) cover what the client refuses to send."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yarl
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError, EventStreamError, HTTPClientError  # type: ignore[import-untyped]
from botocore.session import get_session  # type: ignore[import-untyped]
from urllib3.exceptions import ProtocolError

from tests.fakes.bedrock_upstream import (
    IMAGE_TOKENS,
    FakeBedrock,
    anthropic_input_tokens,
    base_model_id,
    cohere_embeddings,
    converse_input_tokens,
    embedding_vector,
    eventstream_exception,
    eventstream_frame,
    example_input,
    fake_bedrock,
    output_tokens,
    text_tokens,
    word_pieces,
)

ACCESS_KEY = "AKIDFAKETEST0123456"
SECRET_KEY = "fakeSecretKey/0123456789abcdefghijklmnopq"
REGION = "eu-central-1"
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
CLAUDE_EU = "eu.anthropic.claude-3-5-haiku-20241022-v1:0"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                  "required": ["city"]}
WEATHER = {"toolSpec": {"name": "weather", "description": "The weather in a city",
                        "inputSchema": {"json": WEATHER_SCHEMA}}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credential chain, config file or bearer token of the machine reaches botocore."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> Any:
    async with fake_bedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION) as server:
        yield server


def make_client(fake: FakeBedrock, *, secret_key: str = SECRET_KEY, access_key: str = ACCESS_KEY,
                session_token: str | None = None, region: str = REGION, attempts: int = 1,
                read_timeout: float = 10) -> Any:
    return get_session().create_client(
        "bedrock-runtime", region_name=region, endpoint_url=fake.endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, aws_session_token=session_token,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=read_timeout,
                      connect_timeout=5))


async def call(fake: FakeBedrock, operation: str, /, client_options: dict[str, Any] | None = None,
               **params: Any) -> Any:
    """``client.<operation>(**params)`` with a fresh botocore client, in a thread; an InvokeModel body is read."""
    def run() -> Any:
        response = getattr(make_client(fake, **(client_options or {})), operation)(**params)
        if operation == "invoke_model":
            response["body"] = orjson.loads(response["body"].read())
        return response
    return await asyncio.to_thread(run)


async def stream(fake: FakeBedrock, **params: Any) -> list[dict[str, Any]]:
    """Every event of a ``converse_stream`` as botocore parses it."""
    def run() -> list[dict[str, Any]]:
        return list(make_client(fake).converse_stream(**params)["stream"])
    return await asyncio.to_thread(run)


def error_code(error: Any) -> str:
    code: str = error.response["Error"]["Code"]
    return code


async def signed_post(fake: FakeBedrock, path: str, body: bytes, *, secret_key: str = SECRET_KEY,
                      headers: dict[str, str] | None = None,
                      change: Callable[[dict[str, str]], None] | None = None,
                      sent_body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to ``path`` (already percent-encoded) signed by botocore's SigV4Auth; ``change`` edits the
    signed headers and ``sent_body`` replaces the body after signing."""
    request = AWSRequest(method="POST", url=fake.endpoint + path, data=body,
                         headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(ACCESS_KEY, secret_key), "bedrock", REGION).add_auth(request)
    sent = dict(request.headers.items())
    if change is not None:
        change(sent)
    async with aiohttp.ClientSession() as session, session.post(
            yarl.URL(fake.endpoint + path, encoded=True), data=body if sent_body is None else sent_body,
            headers=sent) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def path_of(model: str, operation: str) -> str:
    return f"/model/{model.replace(':', '%3A')}/{operation}"


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


# --- InvokeModel --------------------------------------------------------------------------------------------------

async def test_invoke_anthropic(fake: FakeBedrock) -> None:
    fake.cache_read, fake.cache_write = 30, 5
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}]}
    response = await call(fake, "invoke_model", modelId=CLAUDE_EU, body=orjson.dumps(body),
                          contentType="application/json", accept="application/json")
    message = response["body"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["id"].startswith("msg_bdrk_")
    assert message["model"] == "claude-3-5-haiku-20241022"
    assert message["content"] == [{"type": "text", "text": fake.reply}] and message["stop_reason"] == "end_turn"
    usage = {"input_tokens": anthropic_input_tokens(body), "output_tokens": text_tokens(fake.reply),
             "cache_read_input_tokens": 30, "cache_creation_input_tokens": 5}
    assert message["usage"] == usage
    assert usage["input_tokens"] == text_tokens("Be brief.") + 3 + text_tokens("Hello")
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(usage["input_tokens"])
    assert headers["x-amzn-bedrock-output-token-count"] == str(usage["output_tokens"])
    assert headers["x-amzn-bedrock-cache-read-input-token-count"] == "30"
    assert response["contentType"] == "application/json"
    assert fake.requests[0].operation == "invoke" and fake.requests[0].body == body


async def test_invoke_anthropic_tool_use(fake: FakeBedrock) -> None:
    tool = {"name": "weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Rome?"}]
    body: dict[str, Any] = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "tools": [tool],
            "tool_choice": {"type": "any"}, "messages": messages}
    response = await call(fake, "invoke_model", modelId=CLAUDE, body=orjson.dumps(body))
    [block] = response["body"]["content"]
    assert block["type"] == "tool_use" and block["name"] == "weather" and block["input"] == {"city": "fake"}
    assert block["id"].startswith("toolu_bdrk_") and response["body"]["stop_reason"] == "tool_use"
    answered = {**body, "tool_choice": {"type": "auto"}, "messages": [
        *messages, {"role": "assistant", "content": [block]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "22C"}]}]}
    second = await call(fake, "invoke_model", modelId=CLAUDE, body=orjson.dumps(answered))
    assert second["body"]["stop_reason"] == "end_turn"


@pytest.mark.parametrize(("body", "message"), [
    ({"max_tokens": 10, "model": "claude", "messages": [{"role": "user", "content": "hi"}]},
     "Malformed input request: #: required key [anthropic_version] not found#: extraneous key [model] is not "
     "permitted, please reformat your input and try again."),
    ({"anthropic_version": "2023-06-01", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
     "#/anthropic_version: 2023-06-01 is not a valid enum value"),
    ({"anthropic_version": "bedrock-2023-05-31", "max_tokens": "10", "messages": []},
     "#/max_tokens: expected type: Integer, found: String"),
    ({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "stream": True,
      "messages": [{"role": "user", "content": "hi"}]}, "#: extraneous key [stream] is not permitted"),
    ({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
     'Unexpected role "system"'),
])
async def test_invoke_anthropic_refusals(fake: FakeBedrock, body: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "invoke_model", modelId=CLAUDE, body=orjson.dumps(body))
    assert error_code(caught.value) == "ValidationException"
    assert message in caught.value.response["Error"]["Message"]


async def test_invoke_titan_embeddings(fake: FakeBedrock) -> None:
    response = await call(fake, "invoke_model", modelId="amazon.titan-embed-text-v2:0",
                          body=orjson.dumps({"inputText": "hello world", "dimensions": 256}))
    data = response["body"]
    assert len(data["embedding"]) == 256 and data["embedding"] == embedding_vector("hello world", 256)
    assert math.isclose(math.sqrt(sum(v * v for v in data["embedding"])), 1.0, rel_tol=1e-5)
    assert data["inputTextTokenCount"] == text_tokens("hello world")
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == str(
        text_tokens("hello world"))
    default = await call(fake, "invoke_model", modelId="amazon.titan-embed-text-v2:0",
                         body=orjson.dumps({"inputText": "hi", "normalize": False, "embeddingTypes": ["binary"]}))
    assert len(default["body"]["embedding"]) == 1024
    assert set(default["body"]["embeddingsByType"]["binary"]) <= {0, 1}
    v1 = await call(fake, "invoke_model", modelId="amazon.titan-embed-text-v1", body=orjson.dumps({"inputText": "hi"}))
    assert len(v1["body"]["embedding"]) == 1536
    for body, message in (({"inputText": "hi", "dimensions": 100}, "#/dimensions: 100 is not a valid enum value"),
                          ({"texts": ["hi"]}, "#: required key [inputText] not found#: extraneous key [texts]"),
                          ({"inputText": ""}, "#/inputText: expected minLength: 1, actual: 0")):
        with pytest.raises(ClientError) as caught:
            await call(fake, "invoke_model", modelId="amazon.titan-embed-text-v2:0", body=orjson.dumps(body))
        assert error_code(caught.value) == "ValidationException"
        assert message in caught.value.response["Error"]["Message"]


async def test_invoke_cohere_embeddings(fake: FakeBedrock) -> None:
    texts = ["hello world", "goodbye moon"]
    response = await call(fake, "invoke_model", modelId="cohere.embed-english-v3",
                          body=orjson.dumps({"texts": texts, "input_type": "search_document"}))
    data = response["body"]
    assert data["response_type"] == "embeddings_floats" and data["texts"] == texts and data["id"]
    assert data["embeddings"] == [embedding_vector(t, 1024) for t in texts]
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(sum(text_tokens(t) for t in texts))
    assert headers["x-amzn-bedrock-output-token-count"] == "0"
    typed = await call(fake, "invoke_model", modelId="cohere.embed-multilingual-v3",
                       body=orjson.dumps({"texts": ["hi"], "input_type": "search_query",
                                          "embedding_types": ["float", "int8", "ubinary"]}))
    by_type = typed["body"]["embeddings"]
    assert typed["body"]["response_type"] == "embeddings_by_type" and set(by_type) == {"float", "int8", "ubinary"}
    assert by_type["int8"] == [cohere_embeddings(embedding_vector("hi", 1024), "int8")]
    assert len(by_type["ubinary"][0]) == 128 and max(map(abs, by_type["int8"][0])) == 127
    with pytest.raises(ClientError) as caught:
        await call(fake, "invoke_model", modelId="cohere.embed-english-v3", body=orjson.dumps({"texts": ["hi"]}))
    assert "#: required key [input_type] not found" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as too_many:
        await call(fake, "invoke_model", modelId="cohere.embed-english-v3",
                   body=orjson.dumps({"texts": ["x"] * 97, "input_type": "clustering"}))
    assert "#/texts: expected maximum item count: 96, found: 97" in too_many.value.response["Error"]["Message"]


async def test_invoke_by_arn_and_unknown_model(fake: FakeBedrock) -> None:
    arn = f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-embed-text-v2:0"
    response = await call(fake, "invoke_model", modelId=arn, body=orjson.dumps({"inputText": "hi"}))
    assert fake.requests[0].model_id == arn and len(response["body"]["embedding"]) == 1024
    with pytest.raises(ClientError) as caught:
        await call(fake, "invoke_model", modelId="amazon.titan-embed-text-v9", body=b"{}")
    assert error_code(caught.value) == "ResourceNotFoundException"


# --- authentication -----------------------------------------------------------------------------------------------

async def test_wrong_secret_key_is_an_invalid_signature(fake: FakeBedrock) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", {"secret_key": "not-the-secret"}, modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "The request signature we calculated does not match" in caught.value.response["Error"]["Message"]
    assert fake.requests[0].auth_error == "InvalidSignatureException"


@pytest.mark.parametrize(("options", "code"), [
    ({"access_key": "AKIDUNKNOWN"}, "UnrecognizedClientException"),
    ({"region": "us-east-1"}, "InvalidSignatureException"),
    ({"session_token": "unexpected"}, "UnrecognizedClientException"),
])
async def test_credential_scope_and_key_are_checked(fake: FakeBedrock, options: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", options, modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_session_token() -> None:
    async with fake_bedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token="tok-123",
                            region=REGION) as fake:
        ok = await call(fake, "converse", {"session_token": "tok-123"}, modelId=CLAUDE, messages=[user("hi")])
        assert ok["stopReason"] == "end_turn"
        assert "x-amz-security-token" in fake.requests[0].signed_headers
        for options in ({}, {"session_token": "tok-other"}):
            with pytest.raises(ClientError) as caught:
                await call(fake, "converse", options, modelId=CLAUDE, messages=[user("hi")])
            assert error_code(caught.value) == "UnrecognizedClientException"
        fake.token_expired = True
        with pytest.raises(ClientError) as expired:
            await call(fake, "converse", {"session_token": "tok-123"}, modelId=CLAUDE, messages=[user("hi")])
        assert error_code(expired.value) == "ExpiredTokenException"


@pytest.mark.parametrize(("offset", "message"), [(600, "Signature expired"), (-600, "Signature not yet current")])
async def test_clock_skew_over_five_minutes(fake: FakeBedrock, offset: float, message: str) -> None:
    fake.clock_offset_s = offset
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "InvalidSignatureException"
    assert caught.value.response["Error"]["Message"].startswith(message)
    fake.clock_offset_s = offset / 3
    assert (await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")]))["stopReason"] == "end_turn"


async def test_raw_signature_checks(fake: FakeBedrock) -> None:
    path, body = path_of(CLAUDE, "converse"), orjson.dumps({"messages": [user("hi")]})
    status, _, _ = await signed_post(fake, path, body)
    assert status == 200
    status, headers, raw = await signed_post(fake, path, body, sent_body=body.replace(b"hi", b"yo"))
    assert status == 403 and headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "The Canonical String for this request should have been" in orjson.loads(raw)["message"]
    sha = hashlib.sha256(body).hexdigest()
    status, _, _ = await signed_post(fake, path, body, headers={"x-amz-content-sha256": sha})
    assert status == 200 and "x-amz-content-sha256" in fake.requests[-1].signed_headers
    status, headers, raw = await signed_post(fake, path, body, headers={"x-amz-content-sha256": "0" * 64})
    assert status == 403 and "x-amz-content-sha256" in orjson.loads(raw)["message"]

    def drop_auth(headers: dict[str, str]) -> None:
        del headers["Authorization"]

    status, headers, raw = await signed_post(fake, path, body, change=drop_auth)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")

    def no_signature(headers: dict[str, str]) -> None:
        headers["Authorization"] = headers["Authorization"].rsplit(", Signature=", 1)[0]

    status, headers, raw = await signed_post(fake, path, body, change=no_signature)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")
    assert "requires 'Signature' parameter" in orjson.loads(raw)["message"]


async def test_bedrock_api_key_as_bearer(fake: FakeBedrock) -> None:
    fake.api_key = "bedrock-api-key-fake"
    url = yarl.URL(fake.endpoint + path_of(CLAUDE, "converse"), encoded=True)
    async with aiohttp.ClientSession() as session:
        for key, status in (("bedrock-api-key-fake", 200), ("wrong", 403)):
            async with session.post(url, json={"messages": [user("hi")]},
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == status


# --- failure knobs ------------------------------------------------------------------------------------------------

async def test_throttling_knob(fake: FakeBedrock) -> None:
    fake.fail_status, fake.fail_times = 429, 1
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
    fake.fail_times = 1
    retried = await call(fake, "converse", {"attempts": 3}, modelId=CLAUDE, messages=[user("hi")])
    assert retried["ResponseMetadata"]["RetryAttempts"] == 1 and len(fake.requests) == 3


@pytest.mark.parametrize(("status", "error", "code"), [
    (400, None, "ValidationException"), (404, None, "ResourceNotFoundException"), (424, None, "ModelErrorException"),
    (500, None, "InternalServerException"), (503, None, "ServiceUnavailableException"),
    (0, "ModelNotReadyException", "ModelNotReadyException"),
])
async def test_fail_knobs_map_to_aws_exceptions(fake: FakeBedrock, status: int, error: str | None, code: str) -> None:
    fake.fail_status, fake.fail_error, fake.fail_times = status, error, 1
    with pytest.raises(ClientError) as caught:
        await call(fake, "invoke_model", modelId="cohere.embed-english-v3",
                   body=orjson.dumps({"texts": ["hi"], "input_type": "search_query"}))
    assert error_code(caught.value) == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == (status or 429)
    assert caught.value.response["Error"]["Message"]


async def test_drop_connection_and_delay(fake: FakeBedrock) -> None:
    fake.drop_connection = True
    with pytest.raises(HTTPClientError):
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    fake.drop_connection, fake.delay_s = False, 0.5
    with pytest.raises(HTTPClientError):
        await call(fake, "converse", {"read_timeout": 0.1}, modelId=CLAUDE, messages=[user("hi")])


# --- helpers ------------------------------------------------------------------------------------------------------

def test_eventstream_encoding_round_trips_through_botocore() -> None:
    frame = eventstream_frame("contentBlockDelta", {"delta": {"text": "héllo"}, "contentBlockIndex": 0})
    error = eventstream_exception("throttlingException", {"message": "slow down"})
    buffer = EventStreamBuffer()
    buffer.add_data(frame + error)
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert orjson.loads(first.payload) == {"delta": {"text": "héllo"}, "contentBlockIndex": 0}
    assert first.prelude.total_length == len(frame) and first.prelude.headers_length == len(frame) - 16 - len(
        first.payload)
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.headers[":message-type"] == "exception"
    corrupted = bytearray(frame)
    corrupted[-6] ^= 0xFF
    bad = EventStreamBuffer()
    bad.add_data(bytes(corrupted))
    with pytest.raises(ChecksumMismatch):
        list(bad)


def test_token_counts_and_examples() -> None:
    assert [text_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    body = {"system": [{"text": "abcd"}], "messages": [user("abcdefgh")],
            "toolConfig": {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {}}}}]}}
    assert converse_input_tokens(body) == 1 + 3 + 2 + text_tokens(orjson.dumps(
        {"inputSchema": {"json": {}}, "name": "t"}).decode())
    assert example_input(WEATHER_SCHEMA) == {"city": "fake"}
    assert example_input({"type": "object", "properties": {"n": {"type": "integer"}, "e": {"enum": ["x"]}},
                          "required": ["n", "e"]}) == {"n": 1, "e": "x"}
    assert base_model_id("eu.anthropic.claude-3-5-haiku-20241022-v1:0") == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert base_model_id("arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.amazon.nova-lite-v1:0") \
        == "amazon.nova-lite-v1:0"
    assert base_model_id("amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0"
