"""The hub -> Bedrock request translations are pure: table-driven, no event loop, no sockets.

Every Converse body built here is checked against botocore's model of the service and Bedrock's conversation rules
(``tests.fakes.bedrock_upstream.check_shape`` and ``converse_problem``), every InvokeModel (Anthropic) body against the
native schema the fake enforces: a body these tests accept is one the real API accepts. Also pins how Bedrock model
ids (cross-region and inference-profile ids included) resolve to a base model and a family.
"""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.bedrock_embeddings import embedding_model
from dataplane.translate.hub_to_bedrock import (
    BEDROCK_ANTHROPIC_VERSION,
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
from tests.fakes.bedrock_upstream import ANTHROPIC_FIELDS, check_shape, converse_problem, native_problem

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
