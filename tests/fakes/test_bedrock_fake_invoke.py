"""The fake Bedrock Runtime's InvokeModel (Anthropic, Titan and Cohere bodies) and its event-stream encoding and
token counts, checked with botocore."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from tests.fakes.bedrock_client import CLAUDE, CLAUDE_EU, REGION, WEATHER_SCHEMA, call, error_code, user
from tests.fakes.bedrock_upstream import (
    FakeBedrock,
    anthropic_input_tokens,
    base_model_id,
    cohere_embeddings,
    converse_input_tokens,
    embedding_vector,
    eventstream_exception,
    eventstream_frame,
    example_input,
    text_tokens,
)

pytestmark = pytest.mark.usefixtures("no_aws_environment")  # no AWS configuration of the machine


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
