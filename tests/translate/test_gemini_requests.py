"""The hub -> Gemini request translations are pure: table-driven, no event loop, no sockets.

Every GenerateContentRequest built here is checked by the Google fake's own proto-JSON parsing and request checks
(``assert_accepted``: unknown fields, wrong types and enums, roles, function call/response turns, ranges, Gemini 3's
thought signatures), for both the Gemini API and Vertex AI. Also pins how JSON Schema maps to Gemini's Schema (and
what cannot map), and how Gemini 3's thought signatures ride in tool call ids and come back on the next request.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.gemini_schema import gemini_schema
from dataplane.translate.gemini_to_hub import openai_completion
from dataplane.translate.hub_to_gemini import (
    SKIP_SIGNATURE,
    THINKING_BUDGETS,
    call_id,
    gemini_request,
    output_limit,
    thought_signature,
)
from tests.fakes.google_upstream import FakeGemini, FakeVertex
from tests.translate.gemini_cases import FLASH, USER, WEATHER, answer_of, assert_accepted, request

pytestmark = pytest.mark.pure

PNG = "iVBORw0KGgo="


def refusal(**fields: Any) -> Untranslatable:
    body = gemini_request({"model": "route", "messages": [USER], **fields}, 1000, FLASH)
    assert isinstance(body, Untranslatable), body
    return body


# --- the request --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": {"maxOutputTokens": 1000}}),
    ({"max_tokens": 50}, {"generationConfig": {"maxOutputTokens": 50}}),
    ({"max_tokens": 50, "max_completion_tokens": 70}, {"generationConfig": {"maxOutputTokens": 70}}),
    ({"max_tokens": 5000}, {"generationConfig": {"maxOutputTokens": 1000}}),  # the deployment's bound holds
    ({"temperature": 1.7, "top_p": 0.5}, {"generationConfig": {"maxOutputTokens": 1000, "temperature": 1.7,
                                                               "topP": 0.5}}),
    ({"stop": "END"}, {"generationConfig": {"maxOutputTokens": 1000, "stopSequences": ["END"]}}),
    ({"stop": ["a", "", "b"]}, {"generationConfig": {"maxOutputTokens": 1000, "stopSequences": ["a", "b"]}}),
    ({"n": 3, "seed": 4, "presence_penalty": 0.5, "frequency_penalty": -0.5},
     {"generationConfig": {"maxOutputTokens": 1000, "candidateCount": 3, "seed": 4, "presencePenalty": 0.5,
                           "frequencyPenalty": -0.5}}),
    ({"n": 1}, {"generationConfig": {"maxOutputTokens": 1000}}),
    ({"response_format": {"type": "json_object"}},
     {"generationConfig": {"maxOutputTokens": 1000, "responseMimeType": "application/json"}}),
    ({"response_format": {"type": "text"}}, {"generationConfig": {"maxOutputTokens": 1000}}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "strict": True, "schema": {
        "type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
        "required": ["b", "a"], "additionalProperties": False}}}},
     {"generationConfig": {"maxOutputTokens": 1000, "responseMimeType": "application/json", "responseSchema": {
         "type": "OBJECT", "properties": {"b": {"type": "STRING"}, "a": {"type": "INTEGER"}},
         "required": ["b", "a"], "propertyOrdering": ["b", "a"]}}}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "any", "schema": {"type": "object"}}}},
     {"generationConfig": {"maxOutputTokens": 1000, "responseMimeType": "application/json"}}),
    ({"user": "u-1", "logprobs": True, "logit_bias": {"1": 2}, "parallel_tool_calls": False, "store": False,
      "stream": True, "stream_options": {"include_usage": True}, "metadata": {"a": "b"}},
     {"generationConfig": {"maxOutputTokens": 1000}}),
])
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = request(**fields)
    assert {k: body.get(k) for k in expected} == expected
    assert set(body) <= {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}


@pytest.mark.parametrize(("client", "deployment", "expected"), [
    (None, 4096, 4096),  # set to the deployment's bound: the reservation counted it, thoughts included
    (100, 4096, 100),
    (9000, 4096, 4096),
    (100, 0, 100),
    (None, 0, None),
])
def test_max_output_tokens(client: int | None, deployment: int, expected: int | None) -> None:
    assert output_limit({"max_tokens": client}, deployment) == expected
    body = gemini_request({"messages": [USER], "max_tokens": client}, deployment)
    assert isinstance(body, dict)
    assert body.get("generationConfig", {}).get("maxOutputTokens") == expected


@pytest.mark.parametrize(("effort", "budget"), [("none", 0), ("minimal", 512), ("low", 1024), ("medium", 8192),
                                                ("high", 24576)])
def test_reasoning_effort_is_a_thinking_budget(effort: str, budget: int) -> None:
    assert THINKING_BUDGETS[effort] == budget
    body = request(reasoning_effort=effort)
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": budget}


@pytest.mark.parametrize(("choice", "expected"), [
    (None, None),
    ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
    ("none", {"functionCallingConfig": {"mode": "NONE"}}),
    ("required", {"functionCallingConfig": {"mode": "ANY"}}),
    ({"type": "function", "function": {"name": "weather"}},
     {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    body = request(tools=[WEATHER], tool_choice=choice)
    assert body.get("toolConfig") == expected
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "weather", "description": "Weather in a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}]


def test_a_function_without_parameters_declares_none() -> None:
    for parameters in (None, {}, {"type": "object", "properties": {}}, {"type": "object"}):
        tool = {"type": "function", "function": {"name": "ping", "parameters": parameters}}
        assert request(tools=[tool])["tools"] == [{"functionDeclarations": [{"name": "ping"}]}]


def test_conversation_roles_merge_around_a_tool_loop() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "user", "content": [{"type": "text", "text": "Quickly."},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Bergen"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": '{"celsius": 2}'}]},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": ""},  # blank: dropped, its neighbours merge
        {"role": "user", "content": "Please."},
    ]
    body = gemini_request({"messages": messages, "tools": [WEATHER]}, 256, FLASH)
    assert isinstance(body, dict)
    assert_accepted(body)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse metric units."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Oslo and Bergen?"}, {"text": "Quickly."},
                                   {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
        {"role": "model", "parts": [{"text": "Checking."},
                                    {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
                                    {"functionCall": {"name": "weather", "args": {"city": "Bergen"}}}]},
        # Both results in one turn, as Google requires; the user's next words in a turn of their own.
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"result": "-3C"}}},
                                   {"functionResponse": {"name": "weather", "response": {"celsius": 2}}}]},
        {"role": "user", "parts": [{"text": "And tomorrow?"}, {"text": "Please."}]},
    ]


@pytest.mark.parametrize(("part", "expected"), [
    ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
     {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}),
    ({"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
     {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}),
    ({"type": "text", "text": ""}, None),
])
def test_user_parts(part: dict[str, Any], expected: dict[str, Any] | None) -> None:
    body = request(messages=[{"role": "user", "content": [{"type": "text", "text": "See:"}, part]}])
    assert body["contents"][0]["parts"] == [{"text": "See:"}, *([expected] if expected else [])]


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/c.png"}}]}]},
     "messages[0].content[0]", "data URL"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,x"}}]}]},
     "messages[0].content[0]", "base64"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x",
                                                                                       "format": "flac"}}]}]},
     "messages[0].content[0]", "wav or mp3"),
    ({"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]}, "messages[0].content[0]",
     "'video'"),
    ({"messages": [USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]}, "messages[1].tool_call_id",
     "matches no tool call"),
    ({"messages": [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[1].tool_calls[0].function.arguments", "JSON object"),
    ({"messages": [{"role": "system", "content": "Only a system prompt."}]}, "messages", "no user"),
    ({"functions": [{"name": "f"}]}, "functions", "legacy"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]", "only function tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "'tool_choice'"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "reasoning_effort"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}}}}}]},
     "tools[0].function.parameters.properties.m", "free-form map"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {
        "type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}}}},
     "response_format.json_schema.schema.properties.n.enum", "enums of strings"),
])
def test_untranslatable_requests(fields: dict[str, Any], param: str, says: str) -> None:
    refused = refusal(**fields)
    assert refused.param == param and says in refused.message


# --- JSON Schema → Gemini Schema ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "description": "d", "format": "date-time", "maxLength": 9},
     {"type": "STRING", "description": "d", "format": "date-time", "maxLength": 9}),
    ({"type": "string", "format": "email"}, {"type": "STRING"}),  # a format Gemini does not know: a hint, dropped
    ({"type": "integer", "format": "int64", "minimum": 1, "maximum": 9, "exclusiveMinimum": 0, "multipleOf": 2},
     {"type": "INTEGER", "format": "int64", "minimum": 1, "maximum": 9}),
    ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
    ({"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "maybe", "default": None},
     {"type": "INTEGER", "description": "maybe", "nullable": True}),
    ({"type": ["string", "integer"], "description": "either"},
     {"description": "either", "anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}),
    ({"oneOf": [{"type": "string"}, {"type": "boolean"}]}, {"anyOf": [{"type": "STRING"}, {"type": "BOOLEAN"}]}),
    ({"enum": ["a", "b"]}, {"type": "STRING", "enum": ["a", "b"]}),
    ({"const": "only"}, {"type": "STRING", "enum": ["only"]}),
    ({"type": "array", "items": {"type": "number"}, "minItems": 1, "uniqueItems": True},
     {"type": "ARRAY", "items": {"type": "NUMBER"}, "minItems": 1}),
    ({"properties": {"a": {"type": "boolean"}}, "required": ["a", "gone"], "additionalProperties": False,
      "title": "T", "examples": [{}], "$comment": "c"},
     {"type": "OBJECT", "title": "T", "properties": {"a": {"type": "BOOLEAN"}}, "required": ["a"]}),
    ({"$defs": {"P": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
      "type": "object", "properties": {"p": {"$ref": "#/$defs/P", "description": "a point"},
                                       "q": {"allOf": [{"$ref": "#/$defs/P"}]},
                                       "ps": {"type": "array", "items": {"$ref": "#/$defs/P"}}}},
     {"type": "OBJECT", "properties": {
         "p": {"type": "OBJECT", "description": "a point", "properties": {"x": {"type": "NUMBER"}},
               "required": ["x"]},
         "q": {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}, "required": ["x"]},
         "ps": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}},
                                           "required": ["x"]}}}}),
    ({"definitions": {"E": {"enum": ["x"]}}, "properties": {"e": {"$ref": "#/definitions/E"}}},
     {"type": "OBJECT", "properties": {"e": {"type": "STRING", "enum": ["x"]}}}),
])
def test_schema_conversion(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert gemini_schema(schema, "s") == expected
    if "$defs" in schema or "definitions" in schema:  # "#/..." points into the document's root: use it as one
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        assert request(tools=[tool])["tools"][0]["functionDeclarations"][0]["parameters"] == expected
        return
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "v": schema}}}}
    assert request(tools=[tool])["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]["v"] == expected


@pytest.mark.parametrize(("schema", "says"), [
    ({"not": {"type": "string"}}, "'not'"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "'patternProperties'"),
    ({"type": "array", "prefixItems": [{"type": "string"}]}, "'prefixItems'"),
    ({"type": "array", "items": [{"type": "string"}]}, "tuple"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf'"),
    ({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"},
     "recursive"),
    ({"$ref": "https://example.com/schema.json"}, "local"),
    ({"$ref": "#/$defs/missing"}, "names no definition"),
    ({"type": "integer", "enum": [1, 2]}, "enums of strings"),
    ({"type": "tuple"}, "JSON schema type"),
])
def test_schemas_that_cannot_map(schema: dict[str, Any], says: str) -> None:
    refused = gemini_schema(schema, "s")
    assert isinstance(refused, Untranslatable) and says in refused.message


# --- thought signatures -------------------------------------------------------------------------------------------

def test_call_ids_carry_thought_signatures() -> None:
    signature = base64.b64encode(bytes(range(40))).decode()
    carrying = call_id("abcd", 0, 1, signature)
    assert carrying.startswith("call_abcd0001__sig_")
    assert all(c.isalnum() or c in "_-" for c in carrying)  # safe in any dialect's tool ids
    assert thought_signature(carrying) == signature
    assert call_id("abcd", 0, 1) == "call_abcd0001" and thought_signature("call_abcd0001") is None
    assert thought_signature("toolu_01__sig_AAAA") is None  # not one of ours
    assert call_id("abcd", 1, 2, "not base64!") == "call_abcd0102"


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_gemini_3_tool_round_trip_keeps_the_signature(fake: FakeGemini | FakeVertex) -> None:
    model = "gemini-3-pro-preview"
    question: dict[str, Any] = {"role": "user", "content": "Call weather for Oslo"}
    first = gemini_request({"messages": [question], "tools": [WEATHER]}, 1000, model)
    assert isinstance(first, dict)
    assert_accepted(first, model, fake)
    completion = openai_completion(answer_of(fake, first, model), 1, model, "seed")
    assert isinstance(completion, dict)
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert completion["choices"][0]["finish_reason"] == "tool_calls" and "__sig_" in calls[0]["id"]
    second = gemini_request({"messages": [question, {"role": "assistant", "content": None, "tool_calls": calls},
                                          {"role": "tool", "tool_call_id": calls[0]["id"], "content": "-3C"}],
                             "tools": [WEATHER]}, 1000, model)
    assert isinstance(second, dict)
    assert_accepted(second, model, fake)  # the fake checks the signature is one it issued
    assert second["contents"][1]["parts"][0]["thoughtSignature"] == thought_signature(calls[0]["id"])


def test_gemini_3_calls_from_elsewhere_get_the_placeholder() -> None:
    messages = [USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        {"id": "toolu_2", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "a"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "b"}]
    body = request(model="gemini-3-pro-preview", messages=messages, tools=[WEATHER])
    parts = body["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE and "thoughtSignature" not in parts[1]
    assert "thoughtSignature" not in request(messages=messages, tools=[WEATHER])["contents"][1]["parts"][0]
