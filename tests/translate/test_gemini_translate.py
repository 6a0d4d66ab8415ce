"""The hub <-> Gemini translations are pure: table-driven, no event loop, no sockets.

Every GenerateContentRequest built here is checked by the Google fake's own proto-JSON parsing and request checks
(``assert_accepted``: unknown fields, wrong types and enums, roles, function call/response turns, ranges, Gemini 3's
thought signatures), for both the Gemini API and Vertex AI; answers to translate back come from the fake's answer
builder where they can, so both directions are exercised against the wire formats the adapters see.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.gemini_embeddings import (
    count_tokens_body,
    estimated_embedding_tokens,
    gemini_embedding_bodies,
    gemini_embedding_vectors,
    input_tokens,
    openai_embeddings,
    vertex_embedding_bodies,
    vertex_embedding_vectors,
)
from dataplane.translate.gemini_schema import gemini_schema
from dataplane.translate.gemini_to_hub import GeminiChunkTranslator, openai_completion, openai_usage
from dataplane.translate.hub_to_gemini import (
    FINISH_REASONS,
    GEMINI_EMBED_BATCH,
    SKIP_SIGNATURE,
    THINKING_BUDGETS,
    VERTEX_EMBED_BATCH,
    Blocked,
    call_id,
    gemini_request,
    output_limit,
    thought_signature,
)
from tests.fakes.google_upstream import FakeGemini, FakeVertex, prompt_tokens, text_tokens

pytestmark = pytest.mark.pure

FLASH = "gemini-2.5-flash"
USER: dict[str, Any] = {"role": "user", "content": "Hi"}
WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}}
PNG = "iVBORw0KGgo="


def assert_accepted(body: dict[str, Any], model: str = FLASH, fake: FakeGemini | FakeVertex | None = None,
                    message: str = "GenerateContentRequest") -> None:
    """Both APIs would take ``body`` (the fake's parsing and checks; ``fake`` to check with one that signed)."""
    for upstream in ([fake] if fake is not None else [FakeGemini(), FakeVertex()]):
        version = "v1" if upstream.vertex else "v1beta"
        parsed, refused = upstream._parse(body, True, message, version)
        assert refused is None, f"Google would refuse this body: {refused.text}"
        if message == "GenerateContentRequest":
            problem = upstream._check_generate(parsed, model, message)
            assert problem is None, f"Google would refuse this request: {problem}"


def request(max_output_tokens: int = 1000, model: str = FLASH, **fields: Any) -> dict[str, Any]:
    body = gemini_request({"model": "route", "messages": [USER], **fields}, max_output_tokens, model)
    assert not isinstance(body, Untranslatable), body
    assert_accepted(body, model)
    return body


def refusal(**fields: Any) -> Untranslatable:
    body = gemini_request({"model": "route", "messages": [USER], **fields}, 1000, FLASH)
    assert isinstance(body, Untranslatable), body
    return body


def answer_of(fake: FakeGemini | FakeVertex, body: dict[str, Any], model: str = FLASH) -> dict[str, Any]:
    """The fake's GenerateContentResponse to ``body``, as JSON."""
    parsed, refused = fake._parse(body, True, "GenerateContentRequest", "v1")
    assert refused is None
    plan = fake._plan(parsed, model, "resp-1")
    response: dict[str, Any] = fake._response(plan, fake._envelope(model, "resp-1", "2025-01-01T00:00:00Z"))
    return response


def chunks_of(fake: FakeGemini | FakeVertex, body: dict[str, Any], model: str = FLASH) -> list[dict[str, Any]]:
    parsed, refused = fake._parse(body, True, "GenerateContentRequest", "v1")
    assert refused is None
    plan = fake._plan(parsed, model, "resp-1")
    chunks: list[dict[str, Any]] = fake._chunks(plan, fake._envelope(model, "resp-1", "2025-01-01T00:00:00Z"))
    return chunks


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


# --- answers ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("OTHER", "stop"), ("MALFORMED_FUNCTION_CALL", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"),
])
def test_finish_reasons(reason: str, expected: str) -> None:
    assert FINISH_REASONS.get(reason, "stop") == expected
    response = {"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]}
    completion = openai_completion(response, 1, FLASH, "s")
    assert isinstance(completion, dict) and completion["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize(("meta", "expected"), [
    ({}, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "prompt_tokens_details": {
        "cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}),
    ({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
     {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
      "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}),
    # Thoughts are output (OpenAI counts reasoning in completion_tokens); cached content is part of the prompt.
    ({"promptTokenCount": 100, "candidatesTokenCount": 5, "thoughtsTokenCount": 40, "cachedContentTokenCount": 60,
      "totalTokenCount": 145},
     {"prompt_tokens": 100, "completion_tokens": 45, "total_tokens": 145,
      "prompt_tokens_details": {"cached_tokens": 60}, "completion_tokens_details": {"reasoning_tokens": 40}}),
    ({"promptTokenCount": 10, "toolUsePromptTokenCount": 7, "candidatesTokenCount": 1},
     {"prompt_tokens": 17, "completion_tokens": 1, "total_tokens": 18,
      "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}),
])
def test_usage(meta: dict[str, Any], expected: dict[str, Any]) -> None:
    assert openai_usage(meta) == expected


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_completion_from_the_fakes_answer(fake: FakeGemini | FakeVertex) -> None:
    fake.thoughts_tokens = 12
    body = request(reasoning_effort="low", messages=[USER])
    body["generationConfig"]["thinkingConfig"]["includeThoughts"] = True  # a thought part the answer must skip
    completion = openai_completion(answer_of(fake, body), 123, FLASH, "seed")
    assert isinstance(completion, dict)
    assert completion["object"] == "chat.completion" and completion["created"] == 123
    assert completion["id"] == "chatcmpl-resp-1" and completion["model"] == FLASH
    assert completion["choices"] == [{"index": 0, "message": {"role": "assistant", "content": fake.reply,
                                                              "refusal": None},
                                      "logprobs": None, "finish_reason": "stop"}]
    assert completion["usage"]["prompt_tokens"] == prompt_tokens(body)
    assert completion["usage"]["completion_tokens"] == text_tokens(fake.reply) + 12
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}


def test_function_calls_become_tool_calls() -> None:
    fake = FakeGemini()
    fake.tool_args = {"city": "Oslo"}
    tools = [WEATHER, {"type": "function", "function": {"name": "time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}}]
    body = request(messages=[{"role": "user", "content": "call weather and time"}], tools=tools)
    completion = openai_completion(answer_of(fake, body), 1, FLASH, "seed")
    assert isinstance(completion, dict)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_seed0000", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_seed0001", "type": "function", "function": {"name": "time", "arguments": '{"city":"Oslo"}'}}]


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_blocked_prompt_is_blocked_not_an_empty_answer(fake: FakeGemini | FakeVertex) -> None:
    fake.block_prompt = "PROHIBITED_CONTENT"
    answer = answer_of(fake, request())
    assert "candidates" not in answer
    refused = openai_completion(answer, 1, FLASH, "s")
    assert isinstance(refused, Blocked) and refused.reason == "PROHIBITED_CONTENT"
    assert refused.message == ("The prompt was blocked due to safety reasons." if fake.vertex else "")
    assert openai_completion({"promptFeedback": {}}, 1, FLASH, "s") == Blocked("OTHER")


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_safety_stop_is_content_filter(fake: FakeGemini | FakeVertex) -> None:
    fake.safety_stop = True
    completion = openai_completion(answer_of(fake, request()), 1, FLASH, "s")
    assert isinstance(completion, dict)
    assert completion["choices"][0]["finish_reason"] == "content_filter"
    assert completion["choices"][0]["message"]["content"] == ""


def test_several_candidates_are_choices() -> None:
    fake = FakeVertex()  # Vertex leaves index 0 out, as proto3 JSON does
    completion = openai_completion(answer_of(fake, request(n=3)), 1, FLASH, "s")
    assert isinstance(completion, dict)
    assert [c["index"] for c in completion["choices"]] == [0, 1, 2]


# --- streams ------------------------------------------------------------------------------------------------------

def translate(chunks: list[dict[str, Any]], candidates: int = 1) -> tuple[list[dict[str, Any]], bool]:
    translator = GeminiChunkTranslator(created=9, model=FLASH, call_seed="seed", candidates=candidates)
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        result = translator.feed(chunk)
        assert isinstance(result, list), result
        out += [orjson.loads(payload) for payload in result]
    return out, translator.finished


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_stream_text_and_usage_once(fake: FakeGemini | FakeVertex) -> None:
    fake.thoughts_tokens = 8
    body = request()
    google = chunks_of(fake, body)
    # The fakes' findings: Gemini's usage is cumulative on every chunk, Vertex's on its last only.
    assert all("usageMetadata" in c for c in google) != fake.vertex and "usageMetadata" in google[-1]
    chunks, finished = translate(google)
    assert finished
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-resp-1" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == fake.reply
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    usages = [c for c in chunks if "usage" in c]
    assert len(usages) == 1 and usages[0] is chunks[-1] and usages[0]["choices"] == []
    assert usages[0]["usage"]["completion_tokens"] == text_tokens(fake.reply) + 8
    assert usages[0]["usage"]["prompt_tokens"] == prompt_tokens(body)


def test_stream_usage_is_the_last_chunks() -> None:
    google = [{"candidates": [{"content": {"role": "model", "parts": [{"text": "a"}]}}],
               "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}},
              {"candidates": [{"content": {"role": "model", "parts": [{"text": "b"}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}]
    chunks, _ = translate(google)
    assert chunks[-1]["usage"]["completion_tokens"] == 2 and chunks[-1]["usage"]["prompt_tokens"] == 5


def test_stream_tool_calls() -> None:
    fake = FakeGemini()
    fake.tool_args = {"city": "Oslo"}
    chunks, finished = translate(chunks_of(fake, request(tools=[WEATHER], tool_choice="required")))
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"]
             and "tool_calls" in c["choices"][0]["delta"]]
    assert finished and calls == [[{"index": 0, "id": "call_seed0000", "type": "function",
                                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_stream_of_several_candidates_finishes_when_all_have() -> None:
    fake = FakeGemini()
    chunks, finished = translate(chunks_of(fake, request(n=2)), candidates=2)
    assert finished
    for index in (0, 1):
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"] and c["choices"][0]["index"] == index)
        assert text == fake.reply
    _, unfinished = translate(chunks_of(fake, request(n=2))[:-1], candidates=2)
    assert not unfinished


@pytest.mark.parametrize("fake", [FakeGemini(), FakeVertex()], ids=["gemini", "vertex"])
def test_stream_blocked_prompt(fake: FakeGemini | FakeVertex) -> None:
    fake.block_prompt = True
    google = chunks_of(fake, request())
    translator = GeminiChunkTranslator(created=1, model=FLASH, call_seed="s")
    assert translator.feed(google[0]) == Blocked("SAFETY", "The prompt was blocked due to safety reasons."
                                                 if fake.vertex else "")


def test_stream_safety_stop() -> None:
    fake = FakeVertex()
    fake.safety_stop, fake.safety_stop_words = True, 3
    chunks, finished = translate(chunks_of(fake, request()))
    assert finished and [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "content_filter"


def test_stream_error_object() -> None:
    translator = GeminiChunkTranslator(created=1, model=FLASH, call_seed="s")
    assert translator.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}) == \
        StreamError("UNAVAILABLE", "overloaded")


# --- embeddings ---------------------------------------------------------------------------------------------------

def test_gemini_embedding_bodies_are_batched() -> None:
    texts = [f"t{i}" for i in range(GEMINI_EMBED_BATCH + 5)]
    bodies = gemini_embedding_bodies({"input": texts, "dimensions": 64}, "gemini-embedding-001", 768)
    assert isinstance(bodies, list) and [len(b["requests"]) for b in bodies] == [GEMINI_EMBED_BATCH, 5]
    assert bodies[1]["requests"][0] == {"model": "models/gemini-embedding-001", "outputDimensionality": 64,
                                        "content": {"parts": [{"text": f"t{GEMINI_EMBED_BATCH}"}]}}
    fake = FakeGemini()
    for body in bodies:
        parsed, refused = fake._parse(body, True, "BatchEmbedContentsRequest", "v1beta")
        assert refused is None and fake._check_embed(parsed, "gemini-embedding-001", "batchEmbedContents") is None
    single = gemini_embedding_bodies({"input": "one"}, "text-embedding-004", 0)
    assert single == [{"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]}}]}]


@pytest.mark.parametrize(("model", "sizes"), [("text-embedding-005", [VERTEX_EMBED_BATCH, 10]),
                                              ("gemini-embedding-001", [1] * (VERTEX_EMBED_BATCH + 10))])
def test_vertex_embedding_bodies(model: str, sizes: list[int]) -> None:
    texts = [f"t{i}" for i in range(VERTEX_EMBED_BATCH + 10)]
    bodies = vertex_embedding_bodies({"input": texts}, model, 256)
    assert isinstance(bodies, list) and [len(b["instances"]) for b in bodies] == sizes
    assert bodies[0]["parameters"] == {"outputDimensionality": 256} and bodies[0]["instances"][0] == {"content": "t0"}
    fake = FakeVertex()
    parsed, refused = fake._parse(bodies[0], True, "PredictRequest", "v1")
    assert refused is None and fake._check_predict(parsed, model) is None


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]]])
def test_token_ids_cannot_be_embedded(value: Any) -> None:
    for build in (gemini_embedding_bodies, vertex_embedding_bodies):
        refused = build({"input": value}, "m", 0)
        assert isinstance(refused, Untranslatable) and refused.param == "input"


def test_embedding_answers() -> None:
    assert gemini_embedding_vectors({"embeddings": [{"values": [1, 0.5]}, {"values": [0.25]}]}, 2) == [
        [1.0, 0.5], [0.25]]
    assert gemini_embedding_vectors({"embeddings": [{"values": [1]}]}, 2) is None
    assert gemini_embedding_vectors({"embeddings": [{"values": ["x"]}]}, 1) is None
    vertex = {"predictions": [{"embeddings": {"values": [0.5], "statistics": {"token_count": 3, "truncated": False}}},
                              {"embeddings": {"values": [0.25], "statistics": {"token_count": 4}}}]}
    assert vertex_embedding_vectors(vertex, 2) == ([[0.5], [0.25]], 7)
    assert vertex_embedding_vectors({"predictions": []}, 1) is None
    assert estimated_embedding_tokens(["abcd", "abcde", ""]) == 3  # about four characters a token, rounded up


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
def test_openai_embeddings(fmt: str | None) -> None:
    answer = openai_embeddings([[0.5, -1.0], [0.25, 2.0]], 9, "text-embedding-005", fmt)
    assert answer["object"] == "list" and answer["model"] == "text-embedding-005"
    assert answer["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    assert [d["index"] for d in answer["data"]] == [0, 1] and answer["data"][0]["object"] == "embedding"
    first = answer["data"][0]["embedding"]
    if fmt == "base64":
        assert struct.unpack("<2f", base64.b64decode(first)) == (0.5, -1.0)  # little-endian float32, as OpenAI
    else:
        assert first == [0.5, -1.0]


# --- token counting -----------------------------------------------------------------------------------------------

def test_count_tokens_bodies() -> None:
    payload = {"messages": [{"role": "system", "content": "Be brief."}, USER], "tools": [WEATHER],
               "max_tokens": 1, "temperature": 0.5}
    gemini = count_tokens_body(payload, FLASH, vertex=False)
    assert isinstance(gemini, dict) and set(gemini) == {"generateContentRequest"}
    inner = gemini["generateContentRequest"]
    assert inner["model"] == f"models/{FLASH}" and set(inner) == {"model", "contents", "systemInstruction", "tools"}
    assert_accepted(gemini, fake=FakeGemini(), message="CountTokensRequest")
    fake = FakeGemini()
    assert fake._check_count(fake._parse(gemini, True, "CountTokensRequest", "v1beta")[0], FLASH)[0] is None
    vertex = count_tokens_body(payload, FLASH, vertex=True)
    assert isinstance(vertex, dict) and set(vertex) == {"contents", "systemInstruction", "tools"}
    assert_accepted(vertex, fake=FakeVertex(), message="CountTokensRequest")
    refused = count_tokens_body({"messages": [USER], "functions": []}, FLASH, vertex=True)
    assert isinstance(refused, Untranslatable)


@pytest.mark.parametrize(("answer", "expected"), [
    ({"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}, {"input_tokens": 31}),
    ({}, {"input_tokens": 0}),  # proto3 JSON leaves a zero count out
    ({"totalTokens": "x"}, None),
    ([], None),
])
def test_input_tokens(answer: Any, expected: dict[str, int] | None) -> None:
    assert input_tokens(answer) == expected
