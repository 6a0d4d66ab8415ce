"""The hub <-> Bedrock translations are pure: table-driven, no event loop, no sockets.

Every Converse body built here is checked against botocore's model of the service and Bedrock's conversation rules
(``tests.fakes.bedrock_upstream.check_shape`` and ``converse_problem``), every InvokeModel body against the native
schemas the fake enforces: a body these tests accept is one the real API accepts.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.bedrock_embeddings import (
    embedding_bodies,
    embedding_model,
    embedding_vectors,
    openai_embeddings,
)
from dataplane.translate.bedrock_to_hub import ConverseChunkTranslator, converse_completion, converse_usage
from dataplane.translate.hub_to_bedrock import (
    BEDROCK_ANTHROPIC_VERSION,
    COHERE_BATCH,
    JSON_TOOL,
    ConverseCall,
    base_model,
    converse_request,
    invoke_anthropic_body,
    is_anthropic,
    max_tokens,
    wants_json,
)
from tests.fakes.anthropic_upstream import check as anthropic_check
from tests.fakes.bedrock_upstream import (
    ANTHROPIC_FIELDS,
    COHERE_FIELDS,
    TITAN_V1_FIELDS,
    TITAN_V2_FIELDS,
    check_shape,
    converse_problem,
    native_problem,
)

pytestmark = pytest.mark.pure

USER: dict[str, Any] = {"role": "user", "content": "Hi"}
WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                          "parameters": {"type": "object",
                                                                         "properties": {"city": {"type": "string"}}}}}
PNG = "iVBORw0KGgo="


def call(max_output_tokens: int = 1000, **fields: Any) -> ConverseCall:
    result = converse_request({"model": "route", "messages": [USER], **fields}, max_output_tokens)
    assert isinstance(result, ConverseCall), result
    assert_accepted(result.body)
    return result


def assert_accepted(body: dict[str, Any], operation: str = "Converse") -> None:
    problem = check_shape(operation, body)
    assert problem is None, f"Bedrock would refuse this body: {problem}"
    semantic = converse_problem(body)
    assert semantic is None, f"Bedrock would refuse this conversation: {semantic}"


# --- the request --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "inferenceConfig": {"maxTokens": 1000}}),
    ({"max_tokens": 50}, {"inferenceConfig": {"maxTokens": 50}}),
    ({"max_tokens": 50, "max_completion_tokens": 70}, {"inferenceConfig": {"maxTokens": 70}}),
    ({"max_tokens": 5000}, {"inferenceConfig": {"maxTokens": 1000}}),  # the deployment's bound holds
    ({"temperature": 1.7, "top_p": 0.5}, {"inferenceConfig": {"maxTokens": 1000, "temperature": 1.0, "topP": 0.5}}),
    ({"temperature": 0}, {"inferenceConfig": {"maxTokens": 1000, "temperature": 0.0}}),
    ({"stop": "END"}, {"inferenceConfig": {"maxTokens": 1000, "stopSequences": ["END"]}}),
    ({"stop": ["a", "", "b"]}, {"inferenceConfig": {"maxTokens": 1000, "stopSequences": ["a", "b"]}}),
    ({"tools": [WEATHER]}, {"toolConfig": {"tools": [{"toolSpec": {
        "name": "weather", "description": "Weather in a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]}}}]}}),
    ({"tools": [{"type": "function", "function": {"name": "ping", "description": " "}}]},
     {"toolConfig": {"tools": [{"toolSpec": {"name": "ping",
                                             "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}}),
    ({"tools": [WEATHER], "tool_choice": "auto"}, {"toolConfig": {"tools": [{"toolSpec": {
        "name": "weather", "description": "Weather in a city",
        "inputSchema": {"json": WEATHER["function"]["parameters"]}}}]}}),
    ({"tools": [WEATHER], "tool_choice": "none"}, {"toolConfig": None}),
    ({"user": "u-1", "seed": 3, "presence_penalty": 1, "logprobs": True, "parallel_tool_calls": False,
      "stream_options": {"include_usage": True}}, {"inferenceConfig": {"maxTokens": 1000}}),
])
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = call(**fields).body
    assert {k: body.get(k) for k in expected} == expected
    assert set(body) <= {"messages", "system", "inferenceConfig", "toolConfig"}


@pytest.mark.parametrize(("choice", "expected"), [
    ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "weather"}}, {"tool": {"name": "weather"}}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert call(tools=[WEATHER], tool_choice=choice).body["toolConfig"]["toolChoice"] == expected


@pytest.mark.parametrize(("client", "deployment", "expected"), [
    (None, 4096, 4096),  # set to the deployment's bound: the reservation counted it
    (100, 4096, 100),
    (9000, 4096, 4096),
    (100, 0, 100),
    (None, 0, None),
])
def test_max_tokens(client: int | None, deployment: int, expected: int | None) -> None:
    assert max_tokens({"max_tokens": client}, deployment) == expected
    body = converse_request({"messages": [USER], "max_tokens": client}, deployment)
    assert isinstance(body, ConverseCall)
    assert body.body.get("inferenceConfig", {}).get("maxTokens") == expected


def test_conversation_roles_merge_around_a_tool_loop() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "user", "content": [{"type": "text", "text": "Quickly."}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Bergen"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "2C"}]},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": ""},  # blank: dropped, its neighbours merge
        {"role": "user", "content": "Please."},
    ]
    result = converse_request({"messages": messages, "tools": [WEATHER]}, 256)
    assert isinstance(result, ConverseCall)
    body = result.body
    assert body["system"] == [{"text": "Be brief."}, {"text": "Use metric units."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Oslo and Bergen?"}, {"text": "Quickly."}]},
        {"role": "assistant", "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "weather", "input": {"city": "Bergen"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "-3C"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "2C"}]}},
            {"text": "And tomorrow?"}, {"text": "Please."}]},
    ]
    assert_accepted(body)


def test_tool_results_lead_their_turn_and_empty_results_are_empty() -> None:
    messages: list[dict[str, Any]] = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]},
        {"role": "user", "content": "(the tool ran)"},
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
    ]
    result = converse_request({"messages": messages, "tools": [WEATHER]}, 256)
    assert isinstance(result, ConverseCall)
    assert result.body["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {}}}]
    assert result.body["messages"][2]["content"] == [{"toolResult": {"toolUseId": "call_1", "content": []}},
                                                    {"text": "(the tool ran)"}]
    assert_accepted(result.body)


def test_tool_choice_none_keeps_the_tools_a_tool_history_needs() -> None:
    messages: list[dict[str, Any]] = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    result = converse_request({"messages": messages, "tools": [WEATHER], "tool_choice": "none"}, 256)
    assert isinstance(result, ConverseCall)
    assert result.body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "weather"
    assert "toolChoice" not in result.body["toolConfig"]  # Converse has no "none": the default (auto) it is
    assert_accepted(result.body)


@pytest.mark.parametrize(("url", "expected"), [
    (f"data:image/png;base64,{PNG}", {"image": {"format": "png", "source": {"bytes": PNG}}}),
    (f"data:image/jpeg;base64,{PNG}", {"image": {"format": "jpeg", "source": {"bytes": PNG}}}),
    (f"data:image/jpg;base64,{PNG}", {"image": {"format": "jpeg", "source": {"bytes": PNG}}}),
    (f"data:image/webp;base64,{PNG}", {"image": {"format": "webp", "source": {"bytes": PNG}}}),
    (f"data:image/gif;base64,{PNG}", {"image": {"format": "gif", "source": {"bytes": PNG}}}),
])
def test_images(url: str, expected: dict[str, Any]) -> None:
    message = {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                           {"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}
    result = converse_request({"messages": [message]}, 256)
    assert isinstance(result, ConverseCall)
    assert result.body["messages"][0]["content"] == [{"text": "What is this?"}, expected]
    assert_accepted(result.body)


@pytest.mark.parametrize(("fields", "param", "words"), [
    ({"n": 2}, "n", "'n' must be 1"),
    ({"functions": [{"name": "f"}]}, "functions", "legacy 'functions'"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
     "messages[0].content[0]", "only as base64 data URLs"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
     "messages[0].content[0]", "'image/tiff' are not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xyz"}}]}]},
     "messages[0].content[0]", "data:<media type>;base64"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]", "'input_audio' are not supported"),
    ({"messages": [USER, {"role": "function", "name": "f", "content": "x"}]}, "messages[1].role", "legacy"),
    ({"messages": [USER, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id", "is required"),
    ({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[1].tool_calls[0].function.arguments", "JSON object"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages", "no user or assistant"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]", "only function tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "'tool_choice' must be"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format", "together with tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "xs", "schema": {"type": "array"}}}},
     "response_format.json_schema.schema", "JSON objects"),
])
def test_untranslatable(fields: dict[str, Any], param: str, words: str) -> None:
    result = converse_request({"messages": [USER], **fields}, 256)
    assert isinstance(result, Untranslatable)
    assert result.param == param and words in result.message


def test_json_schema_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    result = call(response_format={"type": "json_schema",
                                   "json_schema": {"name": "city answer!", "schema": schema, "strict": True}})
    assert result.json_tool == "city_answer_"
    assert result.body["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "city_answer_", "description": "Respond with a JSON object matching the "
                                                                       "schema.", "inputSchema": {"json": schema}}}],
        "toolChoice": {"tool": {"name": "city_answer_"}}}
    assert wants_json({"response_format": {"type": "json_schema"}})
    assert not wants_json({"response_format": {"type": "text"}})


def test_json_object_is_a_forced_tool_with_an_object_schema() -> None:
    result = call(response_format={"type": "json_object"})
    assert result.json_tool == JSON_TOOL
    assert result.body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}
    assert result.body["toolConfig"]["toolChoice"] == {"tool": {"name": JSON_TOOL}}


# --- InvokeModel: Anthropic -----------------------------------------------------------------------------------------

def test_invoke_anthropic_body() -> None:
    payload = {"model": "route", "user": "u-1", "max_tokens": 20, "stop": ["END"], "tools": [WEATHER],
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
                   {"type": "text", "text": "What is this?"},
                   {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]}
    body = invoke_anthropic_body(payload, 1000)
    assert isinstance(body, dict)
    assert body["anthropic_version"] == BEDROCK_ANTHROPIC_VERSION
    assert body["max_tokens"] == 20 and body["system"] == "Be brief." and body["stop_sequences"] == ["END"]
    assert not {"model", "stream", "metadata"} & set(body)
    assert native_problem(body, ANTHROPIC_FIELDS, ("anthropic_version", "max_tokens", "messages")) is None
    assert anthropic_check({k: v for k, v in body.items() if k != "anthropic_version"}) is None
    assert invoke_anthropic_body({"messages": [USER]}, 700)["max_tokens"] == 700  # type: ignore[index]


def test_invoke_anthropic_refuses_remote_images_and_what_anthropic_cannot_express() -> None:
    remote = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    result = invoke_anthropic_body({"messages": [remote]}, 100)
    assert isinstance(result, Untranslatable) and "base64 data URLs" in result.message
    assert isinstance(invoke_anthropic_body({"messages": [USER], "n": 3}, 100), Untranslatable)


@pytest.mark.parametrize(("model_id", "base", "anthropic", "embeddings"), [
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0", True, None),
    ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet-20250219-v1:0", True, None),
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0", True, None),
    ("apac.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0", True, None),
    ("arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0",
     "anthropic.claude-3-haiku-20240307-v1:0", True, None),
    ("arn:aws:bedrock:eu-central-1:123456789012:application-inference-profile/abc123", "abc123", False, None),
    ("us.meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0", False, None),
    ("amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0", False, None),
    ("amazon.titan-embed-text-v2:0", "amazon.titan-embed-text-v2:0", False, "titan-v2"),
    ("amazon.titan-embed-text-v1", "amazon.titan-embed-text-v1", False, "titan-v1"),
    ("cohere.embed-multilingual-v3", "cohere.embed-multilingual-v3", False, "cohere"),
    ("amazon.titan-embed-image-v1", "amazon.titan-embed-image-v1", False, None),
])
def test_model_ids(model_id: str, base: str, anthropic: bool, embeddings: str | None) -> None:
    assert base_model(model_id) == base
    assert is_anthropic(model_id) is anthropic
    assert embedding_model(model_id) == embeddings


# --- the answer ---------------------------------------------------------------------------------------------------

def converse_answer(content: list[dict[str, Any]], stop_reason: str = "end_turn",
                    usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason,
            "usage": usage or {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}, "metrics": {"latencyMs": 9}}


def completion(answer: dict[str, Any], json_tool: str | None = None) -> dict[str, Any]:
    return converse_completion(answer, completion_id="chatcmpl-1", model="amazon.nova-lite-v1:0", created=7,
                               json_tool=json_tool)


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("malformed_model_output", "stop"), ("a_new_reason", "stop"),
])
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    assert completion(converse_answer([{"text": "x"}], stop_reason))["choices"][0]["finish_reason"] == finish


def test_completion_text() -> None:
    out = completion(converse_answer([{"text": "Hello "}, {"reasoningContent": {"reasoningText": {"text": "hm"}}},
                                      {"text": "there"}]))
    assert out == {"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "amazon.nova-lite-v1:0",
                   "system_fingerprint": None,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                                "logprobs": None, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                             "prompt_tokens_details": {"cached_tokens": 0}}}


def test_completion_tool_calls() -> None:
    out = completion(converse_answer([{"text": "Let me check."},
                                      {"toolUse": {"toolUseId": "tooluse_1", "name": "weather",
                                                   "input": {"city": "Oslo"}}}], "tool_use"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [{"id": "tooluse_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city":"Oslo"}'}}]
    only_calls = completion(converse_answer([{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}], "tool_use"))
    assert only_calls["choices"][0]["message"]["content"] is None


def test_completion_of_the_forced_json_tool_is_content() -> None:
    answer = converse_answer([{"text": "Here:"}, {"toolUse": {"toolUseId": "t", "name": JSON_TOOL,
                                                              "input": {"city": "Oslo"}}}], "tool_use")
    choice = completion(answer, JSON_TOOL)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"city":"Oslo"}', "refusal": None}
    assert choice["finish_reason"] == "stop"
    # The model answered in text after all (cut short): that text is the content.
    cut = completion(converse_answer([{"text": "{\"ci"}], "max_tokens"), JSON_TOOL)["choices"][0]
    assert cut["message"]["content"] == "{\"ci" and cut["finish_reason"] == "length"


@pytest.mark.parametrize(("usage", "expected"), [
    ({"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
     {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 0}}),
    ({"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 0},
     {"prompt_tokens": 110, "completion_tokens": 5, "total_tokens": 115,
      "prompt_tokens_details": {"cached_tokens": 100}}),
    ({"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 40},
     {"prompt_tokens": 150, "completion_tokens": 5, "total_tokens": 155,
      "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 40, "cache_write_1h_tokens": 0}}),
    ({"inputTokens": 1, "outputTokens": 2, "cacheWriteInputTokens": 40,
      "cacheDetails": [{"ttl": "1h", "inputTokens": 30}, {"ttl": "5m", "inputTokens": 10}]},
     {"prompt_tokens": 41, "completion_tokens": 2, "total_tokens": 43,
      "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 10, "cache_write_1h_tokens": 30}}),
    ({}, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
          "prompt_tokens_details": {"cached_tokens": 0}}),
])
def test_usage(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    assert converse_usage(usage) == expected


# --- the stream ---------------------------------------------------------------------------------------------------

def run(events: list[dict[str, Any]], json_tool: str | None = None) -> tuple[list[dict[str, Any]],
                                                                              ConverseChunkTranslator]:
    translator = ConverseChunkTranslator("chatcmpl-s", 7, "amazon.nova-lite-v1:0", json_tool)
    chunks: list[dict[str, Any]] = []
    for event in events:
        out = translator.feed(event)
        assert not isinstance(out, StreamError)
        chunks += [orjson.loads(c) for c in out]
    return chunks, translator


METADATA = {"metadata": {"usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14,
                                   "cacheReadInputTokens": 2}, "metrics": {"latencyMs": 5}, "p": "abc"}}


def test_stream_text() -> None:
    chunks, translator = run([
        {"messageStart": {"role": "assistant", "p": "a"}},
        {"contentBlockDelta": {"delta": {"text": "Hello"}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": " there"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        METADATA])
    assert translator.finished
    assert all(c["id"] == "chatcmpl-s" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello there"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 12
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}


def test_stream_tool_calls() -> None:
    chunks, _ = run([
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Checking."}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t1", "name": "weather"}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"city":'}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '"Oslo"}'}}, "contentBlockIndex": 1}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t2", "name": "time"}}, "contentBlockIndex": 2}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": "{}"}}, "contentBlockIndex": 2}},
        {"messageStop": {"stopReason": "tool_use"}},
        METADATA])
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for part in delta.get("tool_calls") or []:
            entry = calls.setdefault(part["index"], {"id": "", "name": "", "arguments": ""})
            entry["id"] += part.get("id", "")
            entry["name"] += part.get("function", {}).get("name", "")
            entry["arguments"] += part["function"].get("arguments", "")
    assert calls == {0: {"id": "t1", "name": "weather", "arguments": '{"city":"Oslo"}'},
                     1: {"id": "t2", "name": "time", "arguments": "{}"}}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_stream_json_mode_content_is_the_forced_tool_input() -> None:
    chunks, _ = run([
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Sure:"}, "contentBlockIndex": 0}},
        {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": '{"a":'}}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"toolUse": {"input": "1}"}}, "contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "tool_use"}},
        METADATA], JSON_TOOL)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == '{"a":1}'
    assert not any("tool_calls" in d["delta"] for d in deltas)
    assert deltas[-1]["finish_reason"] == "stop"


def test_stream_json_mode_without_the_tool_releases_the_text() -> None:
    chunks, _ = run([
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "{\"a\""}, "contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "max_tokens"}},
        METADATA], JSON_TOOL)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == "{\"a\""
    assert deltas[-1]["finish_reason"] == "length"


@pytest.mark.parametrize("kind", ["throttlingException", "modelStreamErrorException", "validationException"])
def test_stream_exception_is_a_value(kind: str) -> None:
    translator = ConverseChunkTranslator("c", 1, "m")
    assert translator.feed({kind: {"message": "Too many requests"}}) == StreamError(kind, "Too many requests")


def test_stream_ignores_what_it_does_not_know() -> None:
    translator = ConverseChunkTranslator("c", 1, "m")
    assert translator.feed({}) == []
    assert translator.feed({"contentBlockDelta": {"delta": {"reasoningContent": {"text": "hm"}}}}) == []
    assert translator.feed({"somethingNew": {"x": 1}}) == []
    assert not translator.finished


# --- embeddings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "payload", "default", "expected"), [
    ("titan-v2", {"input": "hi"}, 0, [{"inputText": "hi"}]),
    ("titan-v2", {"input": ["a", "b"]}, 512, [{"inputText": "a", "dimensions": 512},
                                              {"inputText": "b", "dimensions": 512}]),
    ("titan-v2", {"input": "hi", "dimensions": 256}, 1024, [{"inputText": "hi", "dimensions": 256}]),
    ("titan-v1", {"input": ["a", "b"]}, 1536, [{"inputText": "a"}, {"inputText": "b"}]),
    ("titan-v1", {"input": "a", "dimensions": 1536}, 1536, [{"inputText": "a"}]),
    ("cohere", {"input": ["a", "b"]}, 1024, [{"texts": ["a", "b"], "input_type": "search_document"}]),
    ("cohere", {"input": "a", "dimensions": 1024}, 1024, [{"texts": ["a"], "input_type": "search_document"}]),
])
def test_embedding_bodies(model: Any, payload: dict[str, Any], default: int, expected: list[dict[str, Any]]) -> None:
    bodies = embedding_bodies(payload, model, default)
    assert bodies == expected
    fields = {"titan-v2": TITAN_V2_FIELDS, "titan-v1": TITAN_V1_FIELDS, "cohere": COHERE_FIELDS}[model]
    required = ("texts", "input_type") if model == "cohere" else ("inputText",)
    assert all(native_problem(body, fields, required) is None for body in bodies)


def test_cohere_batches() -> None:
    texts = [f"text {i}" for i in range(2 * COHERE_BATCH + 5)]
    bodies = embedding_bodies({"input": texts}, "cohere", 1024)
    assert isinstance(bodies, list)
    assert [len(b["texts"]) for b in bodies] == [COHERE_BATCH, COHERE_BATCH, 5]
    assert [t for b in bodies for t in b["texts"]] == texts


@pytest.mark.parametrize(("model", "payload", "default"), [
    ("titan-v2", {"input": "a", "dimensions": 300}, 1024),
    ("titan-v2", {"input": "a"}, 768),
    ("titan-v1", {"input": "a", "dimensions": 256}, 1536),
    ("cohere", {"input": "a", "dimensions": 256}, 1024),
])
def test_embedding_dimensions_refused(model: Any, payload: dict[str, Any], default: int) -> None:
    result = embedding_bodies(payload, model, default)
    assert isinstance(result, Untranslatable) and result.param == "dimensions"


@pytest.mark.parametrize(("model", "answer", "expected"), [
    ("titan-v2", {"embedding": [0.5, -0.25], "inputTextTokenCount": 2}, [[0.5, -0.25]]),
    ("cohere", {"embeddings": [[1.0], [0.5]], "response_type": "embeddings_floats"}, [[1.0], [0.5]]),
    ("cohere", {"embeddings": {"float": [[1.0]]}, "response_type": "embeddings_by_type"}, [[1.0]]),
    ("titan-v2", {"embedding": "nope"}, None),
    ("cohere", {"embeddings": [["x"]]}, None),
    ("cohere", [], None),
])
def test_embedding_vectors(model: Any, answer: Any, expected: list[list[float]] | None) -> None:
    assert embedding_vectors(model, answer) == expected


def test_openai_embeddings_float_and_base64() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]]
    floats = openai_embeddings(vectors, 7, "amazon.titan-embed-text-v2:0")
    assert floats == {"object": "list", "model": "amazon.titan-embed-text-v2:0",
                      "data": [{"object": "embedding", "index": 0, "embedding": vectors[0]},
                               {"object": "embedding", "index": 1, "embedding": vectors[1]}],
                      "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    encoded = openai_embeddings(vectors, 7, "m", "base64")
    decoded = [list(struct.unpack("<3f", base64.b64decode(d["embedding"]))) for d in encoded["data"]]
    assert decoded == vectors
    assert "usage" not in openai_embeddings(vectors, None, "m")  # no count: the gateway estimates, marked
