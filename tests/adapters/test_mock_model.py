"""The mock provider's model (``dataplane.upstream.adapters.mock.model``), checked against the official openai SDK:
every answer validates as the SDK's type, streams accumulate (with the SDK's own accumulator) to the non-streamed
answer, generated JSON validates against its schema, and the same input always gives the same output."""

from __future__ import annotations

import array
import base64
import datetime
import enum
import math
import re
import uuid
from typing import Any, Literal

import openai
import orjson
import pytest
from openai.lib._parsing._completions import parse_chat_completion, type_to_response_format_param
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion, CreateEmbeddingResponse, Moderation, ModerationCreateResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ParsedChatCompletion
from pydantic import BaseModel, Field

from dataplane.translate.anthropic_to_hub import openai_request
from dataplane.upstream.adapters.mock import text as mock_text
from dataplane.upstream.adapters.mock.model import chat_chunks, chat_completion
from dataplane.upstream.adapters.mock.schema import schema_instance
from dataplane.upstream.adapters.mock.surfaces import embeddings, moderation, text_completion, text_completion_chunks
from dataplane.upstream.adapters.mock.text import count_message_tokens, count_tokens, prompt_tokens, text_tokens

pytestmark = pytest.mark.pure

# -- a small JSON schema validator (jsonschema is not installed): the keywords the generator claims to honour --


def _resolve_ref(root: Any, ref: str) -> Any:
    node = root
    for part in (p for p in ref.lstrip("#").split("/") if p):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _is_type(value: Any, kind: str) -> bool:
    return {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer()),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _format_ok(value: str, fmt: str) -> bool:
    checks: dict[str, Any] = {
        "date": datetime.date.fromisoformat,
        "date-time": lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")),
        "uuid": uuid.UUID,
        "email": lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", v) or (_ for _ in ()).throw(ValueError()),
    }
    try:
        checks.get(fmt, str)(value)
    except ValueError:
        return False
    return True


def schema_errors(value: Any, schema: Any, root: Any = None, path: str = "$") -> list[str]:
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: the false schema"]
    errors: list[str] = []
    if "$ref" in schema:
        errors += schema_errors(value, _resolve_ref(root, schema["$ref"]), root, path)
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, root, path)
    if "anyOf" in schema and all(schema_errors(value, s, root, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema and sum(not schema_errors(value, s, root, path) for s in schema["oneOf"]) != 1:
        errors.append(f"{path}: matches not exactly one oneOf branch")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: not the const {schema['const']!r}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} not in the enum")
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds is not None and not any(_is_type(value, k) for k in kinds):
        return [*errors, f"{path}: {value!r} is not of type {kinds}"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing required {r!r}" for r in schema.get("required", []) if r not in value]
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, f"{path}.{key}")
        if len(value) < schema.get("minProperties", 0) or len(value) > schema.get("maxProperties", math.inf):
            errors.append(f"{path}: wrong number of properties")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += schema_errors(item, sub, root, f"{path}[{i}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            errors.append(f"{path}: wrong number of items")
        if schema.get("uniqueItems") and len({orjson.dumps(v) for v in value}) != len(value):
            errors.append(f"{path}: items not unique")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{path}: wrong length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
        if "format" in schema and not _format_ok(value, schema["format"]):
            errors.append(f"{path}: {value!r} is not a {schema['format']}")
    if _is_type(value, "number"):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            errors.append(f"{path}: {value} out of bounds")
        if value <= schema.get("exclusiveMinimum", -math.inf) or value >= schema.get("exclusiveMaximum", math.inf):
            errors.append(f"{path}: {value} out of exclusive bounds")
        step = schema.get("multipleOf")
        if step and abs(value / step - round(value / step)) > 1e-9:
            errors.append(f"{path}: {value} not a multiple of {step}")
    return errors


def test_the_validator_rejects_what_it_should() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 2}}, "required": ["a"],
              "additionalProperties": False}
    assert schema_errors({"a": 3}, schema) == []
    assert schema_errors({"a": 1}, schema) and schema_errors({}, schema) and schema_errors({"a": 2, "b": 1}, schema)
    assert schema_errors({"a": True}, schema) and schema_errors("x", {"type": "string", "format": "date"})


# -- schema instances ----------------------------------------------------------------------------------------------

WEATHER_PARAMS = {"type": "object", "properties": {
    "city": {"type": "string", "description": "The city"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}
GET_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                                "parameters": WEATHER_PARAMS}}
SEARCH = {"type": "function", "function": {"name": "search_docs", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["query"]}}}

SCHEMAS: list[tuple[str, dict[str, Any], str]] = [
    ("scalars", {"type": "object", "properties": {
        "s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"}, "b": {"type": "boolean"},
        "z": {"type": "null"}}, "required": ["s", "n", "i", "b", "z"], "additionalProperties": False}, ""),
    ("enum and const", {"type": "object", "properties": {
        "unit": {"enum": ["celsius", "fahrenheit"]}, "v": {"const": 3}, "mixed": {"enum": [1, "two", None]}},
        "required": ["unit", "v", "mixed"]}, "in fahrenheit please"),
    ("bounds", {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 10, "maximum": 12}, "b": {"type": "number", "exclusiveMinimum": 0,
                                                                      "exclusiveMaximum": 1},
        "c": {"type": "integer", "multipleOf": 5, "minimum": 7}, "d": {"type": "number", "maximum": -3},
        "e": {"type": "integer", "exclusiveMaximum": 0}},
        "required": ["a", "b", "c", "d", "e"]}, ""),
    ("strings", {"type": "object", "properties": {
        "short": {"type": "string", "maxLength": 3}, "long": {"type": "string", "minLength": 30},
        "code": {"type": "string", "pattern": "^[A-Z][0-9]$"}, "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"},
        "mail": {"type": "string", "format": "email"}},
        "required": ["short", "long", "code", "day", "at", "id", "mail"]}, ""),
    ("arrays", {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        "none": {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
        "nums": {"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "minItems": 2,
                 "uniqueItems": True}},
        "required": ["tags", "pair", "none", "nums"]}, ""),
    ("nested, anyOf, type lists", {"type": "object", "properties": {
        "owner": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                  "required": ["name", "age"], "additionalProperties": False},
        "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 4}]},
        "either": {"type": ["null", "string"]},
        "one": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2}},
        "required": ["owner", "maybe", "either", "one", "map"]}, "the owner is named Alice"),
    ("refs and allOf", {"$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}},
                                            "required": ["x"]},
                                  "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
                        "type": "object", "properties": {
                            "p": {"$ref": "#/$defs/Point"}, "tree": {"$ref": "#/$defs/Node"},
                            "both": {"allOf": [{"$ref": "#/$defs/Point"}, {"properties": {"y": {"type": "string"}},
                                                                          "required": ["y"]}]}},
                        "required": ["p", "tree", "both"]}, ""),
    ("a loose tool schema", {"type": "object", "properties": {"city": {"type": "string"},
                                                              "days": {"type": "integer"}}}, "forecast for Oslo"),
    ("untyped", {"description": "anything"}, ""),
]


@pytest.mark.parametrize(("schema", "prompt"), [(s, p) for _, s, p in SCHEMAS], ids=[n for n, _, _ in SCHEMAS])
def test_schema_instances_validate(schema: dict[str, Any], prompt: str) -> None:
    for variant in range(3):
        value = schema_instance(schema, prompt, variant)
        assert schema_errors(value, schema) == [], value
        assert schema_instance(schema, prompt, variant) == value


@pytest.mark.parametrize(("schema", "prompt", "expected"), [
    (WEATHER_PARAMS, "What's the weather in Paris? Call the tool.", {"city": "Paris"}),
    (WEATHER_PARAMS, "weather in New York City in fahrenheit", {"city": "New York City", "unit": "fahrenheit"}),
    (WEATHER_PARAMS, "how warm is it in lisbon", {"city": "Lisbon"}),
    ({"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
     "Where is order 12345?", {"order_id": "12345"}),
    ({"type": "object", "properties": {"days": {"type": "integer"}, "location": {"type": "string"}},
      "required": ["days", "location"]}, "Forecast for Rome for 5 days", {"days": 5, "location": "Rome"}),
    ({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
     "find cheap flights", {"query": "find cheap flights"}),
], ids=["city", "multi-word city and enum", "lower-case city", "id after its name", "number before its name",
        "query"])
def test_values_come_from_the_prompt(schema: dict[str, Any], prompt: str, expected: dict[str, Any]) -> None:
    assert schema_instance(schema, prompt) == expected


# A client's malformed schema (found by tests/edge/test_fuzz.py): ignored where a keyword is the wrong type, refused
# with ValueError (the mock's 400) where no value of a sane size exists; never another exception (a 500), never a
# value a JSON writer cannot write, never a loop without end.
@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": 7.5}, {}),
    ({"allOf": [{"properties": 1, "required": True}], "properties": {"a": {"const": 1}}, "required": ["a"]},
     {"a": 1}),
    ({"type": "integer", "minimum": 1e300}, 1e300),
])
def test_malformed_schemas_are_ignored_where_they_are_wrong(schema: dict[str, Any], expected: Any) -> None:
    value = schema_instance(schema, "")
    assert value == expected
    orjson.dumps(value)


@pytest.mark.parametrize("schema", [
    {"type": "array", "minItems": 10**9}, {"type": "string", "minLength": 2**63 - 1},
    {"type": "object", "minProperties": 2**62},
    {"type": "array", "minItems": 400, "items": {"type": "array", "minItems": 400}},
    {"type": "integer", "minimum": -1e308, "exclusiveMaximum": -1e308},  # (-1e308 + -1e308) / 2 is -inf
])
def test_schemas_no_value_of_a_sane_size_satisfies_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="schema"):
        schema_instance(schema, "")


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Reading(BaseModel):
    city: str
    temperature: float
    unit: Unit
    raining: bool
    tags: list[str]
    note: str | None
    day: datetime.date


class Report(BaseModel):
    title: str
    kind: Literal["daily", "weekly"]
    readings: list[Reading]
    count: int = Field(ge=3, le=9)


def test_strict_pydantic_schemas_parse() -> None:
    # What client.beta.chat.completions.parse(response_format=Report) sends, parsed back by the SDK.
    response_format = type_to_response_format_param(Report)
    payload = {"messages": [{"role": "user", "content": "Report the weather in Oslo"}],
               "response_format": response_format}
    answer = ChatCompletion.model_validate(chat_completion(payload, "mock", "chatcmpl-1", 1, None))
    parsed = parse_chat_completion(response_format=Report, input_tools=openai.omit, chat_completion=answer)
    report = parsed.choices[0].message.parsed
    assert isinstance(report, Report) and report.readings[0].city == "Oslo" and 3 <= report.count <= 9


# -- chat completions ------------------------------------------------------------------------------------------------


def user(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **fields}


CHATS: list[tuple[str, dict[str, Any], int | None]] = [
    ("plain", user("Hello there"), None),
    ("plain, cut", user("Tell me a long story about dragons and castles"), 5),
    ("parts and system", {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": [
        {"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     None),
    ("stop sequence", user("one two three", stop=["three"]), None),
    ("n", user("Hi", n=3), None),
    ("logprobs", user("Hi there", logprobs=True, top_logprobs=3), None),
    ("n and logprobs, cut", user("Hi there", n=2, logprobs=True), 4),
    ("tool call", user("What's the weather in Paris? Call the tool.", tools=[GET_WEATHER]), None),
    ("parallel tool calls", user("Weather in Paris, Tokyo and Lima?", tools=[GET_WEATHER]), None),
    ("two tools", user("Use search_docs and get_weather for Paris", tools=[GET_WEATHER, SEARCH]), None),
    ("tool call, n", user("weather in Oslo", tools=[GET_WEATHER], n=2), None),
    ("tool call, cut", user("weather in Oslo", tools=[GET_WEATHER]), 4),
    ("tools not asked for", user("Hello there", tools=[GET_WEATHER]), None),
    ("json schema", user("Weather in Rome", response_format={"type": "json_schema", "json_schema": {
        "name": "w", "strict": True, "schema": {**WEATHER_PARAMS, "required": ["city", "unit"],
                                                "additionalProperties": False}}}), None),
    ("json object", user("Give me JSON", response_format={"type": "json_object"}, n=2), None),
]


def _chat(payload: dict[str, Any], limit: int | None) -> ChatCompletion:
    return ChatCompletion.model_validate(chat_completion(payload, "mock-model", "chatcmpl-mock1", 1700000000, limit))


def _accumulate(chunks: list[dict[str, Any]]) -> ParsedChatCompletion[object]:
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    # The snapshot, not get_final_completion(): that refuses to parse a completion cut by the length limit.
    return state.current_completion_snapshot


def _calls_of(message: Any) -> list[tuple[str, str, str, str]]:
    return [(c.id, c.type, c.function.name, c.function.arguments) for c in message.tool_calls or []]


@pytest.mark.parametrize(("payload", "limit"), [(p, m) for _, p, m in CHATS], ids=[n for n, _, _ in CHATS])
def test_chat_answers_validate_and_count(payload: dict[str, Any], limit: int | None) -> None:
    answer = _chat(payload, limit)
    assert answer.object == "chat.completion" and answer.model == "mock-model" and answer.id == "chatcmpl-mock1"
    assert [c.index for c in answer.choices] == list(range(payload.get("n", 1)))
    assert answer.usage is not None and answer.usage.prompt_tokens == prompt_tokens(payload)
    generated = 0
    for choice in answer.choices:
        message = choice.message
        generated += text_tokens(message.content or "")
        if choice.logprobs is not None:  # a logprob per token
            assert len(choice.logprobs.content or []) == text_tokens(message.content or "")
        for call in message.tool_calls or []:
            assert call.type == "function"
            generated += count_tokens(call.function.name) + count_tokens(call.function.arguments)
        if limit is not None and choice.finish_reason == "stop":
            assert text_tokens(message.content or "") <= limit
    assert answer.usage.completion_tokens == generated
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + generated
    assert answer.usage.prompt_tokens_details is not None and answer.usage.prompt_tokens_details.cached_tokens == 0
    details = answer.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == 0
    # Deterministic: the same request, the same answer.
    assert chat_completion(payload, "m", "i", 1, limit) == chat_completion(payload, "m", "i", 1, limit)


@pytest.mark.parametrize(("payload", "limit"), [(p, m) for _, p, m in CHATS], ids=[n for n, _, _ in CHATS])
def test_chat_streams_accumulate_to_the_answer(payload: dict[str, Any], limit: int | None) -> None:
    answer = _chat(payload, limit)
    chunks = chat_chunks(payload, "mock-model", "chatcmpl-mock1", 1700000000, limit)
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-mock1" for c in chunks)
    *body, last = chunks
    assert last["choices"] == [] and last["usage"] == chat_completion(payload, "m", "i", 1, limit)["usage"]
    assert all("usage" not in c and len(c["choices"]) == 1 for c in body)
    first_deltas = [c["choices"][0] for c in body if "role" in c["choices"][0]["delta"]]
    assert [c["index"] for c in first_deltas] == list(range(len(answer.choices)))  # opened in index order
    streamed = _accumulate(chunks)
    assert len(streamed.choices) == len(answer.choices)
    for got, want in zip(streamed.choices, answer.choices, strict=True):
        assert got.finish_reason == want.finish_reason
        assert got.message.content == want.message.content
        assert _calls_of(got.message) == _calls_of(want.message)
        assert (got.logprobs and got.logprobs.model_dump()) == (want.logprobs and want.logprobs.model_dump())
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in body if "tool_calls" in c["choices"][0]["delta"]]
    if calls:  # the arguments arrive in several fragments after the named first delta
        assert calls[0][0]["function"]["arguments"] == "" and len(calls) > 2 * len(answer.choices[0].message.tool_calls
                                                                                    or [])


def _tool_calls(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    answer = _chat(payload, None)
    message = answer.choices[0].message
    if not message.tool_calls:
        assert answer.choices[0].finish_reason == "stop" and message.content
        return []
    assert answer.choices[0].finish_reason == "tool_calls" and message.content is None
    out = []
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        out.append((call.function.name, orjson.loads(call.function.arguments)))
    return out


@pytest.mark.parametrize(("payload", "expected"), [
    (user("What's the weather in Paris? Call the tool.", tools=[GET_WEATHER]), [("get_weather", {"city": "Paris"})]),
    (user("Hello there", tools=[GET_WEATHER]), []),
    (user("Hello there", tools=[GET_WEATHER], tool_choice="required"), [("get_weather", {"city": "San Francisco"})]),
    (user("Hello there", tools=[GET_WEATHER, SEARCH], tool_choice={"type": "function",
                                                                    "function": {"name": "search_docs"}}),
     [("search_docs", {"query": "Hello there"})]),
    (user("Call get_weather for Paris", tools=[GET_WEATHER], tool_choice="none"), []),
    (user("Weather in Paris and Tokyo?", tools=[GET_WEATHER]),
     [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]),
    (user("Weather in Paris and Tokyo?", tools=[GET_WEATHER], parallel_tool_calls=False),
     [("get_weather", {"city": "Paris"})]),
    (user("search_docs about rate limits, limit 3", tools=[GET_WEATHER, SEARCH]),
     [("search_docs", {"query": "search_docs about rate limits, limit 3", "limit": 3})]),
    (user("Please call the tool", tools=[SEARCH]), [("search_docs", {"query": "Please call the tool"})]),
    (user("weather in Paris", tools=[GET_WEATHER, SEARCH], tool_choice={
        "type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "search_docs"}}]}}),
     [("search_docs", {"query": "weather in Paris"})]),
], ids=["asked for", "not asked for", "required", "named", "none", "parallel", "parallel off", "by name",
        "call the tool", "allowed tools"])
def test_tool_choice(payload: dict[str, Any], expected: list[tuple[str, dict[str, Any]]]) -> None:
    calls = _tool_calls(payload)
    assert calls == expected
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in payload["tools"]}
    for name, arguments in calls:
        assert schema_errors(arguments, schemas[name]) == []


@pytest.mark.parametrize(("name", "schema", "_prompt"), SCHEMAS, ids=[n for n, _, _ in SCHEMAS])
def test_tool_arguments_validate_against_the_parameters(name: str, schema: dict[str, Any], _prompt: str) -> None:
    tool = {"type": "function", "function": {"name": "do_it", "parameters": schema}}
    [(called, arguments)] = _tool_calls(user("Call do_it", tools=[tool], tool_choice="required"))
    assert called == "do_it" and schema_errors(arguments, schema) == []


def test_strict_pydantic_tools_parse() -> None:
    tool = openai.pydantic_function_tool(Reading, name="record_reading")
    answer = _chat(user("Record a reading in Berlin", tools=[tool], tool_choice="required"), None)
    parsed = parse_chat_completion(response_format=openai.omit, input_tools=[tool], chat_completion=answer)
    [call] = parsed.choices[0].message.tool_calls or []
    arguments = call.function.parsed_arguments
    assert isinstance(arguments, Reading) and arguments.city == "Berlin"


def test_an_agent_loop_ends_with_an_answer_quoting_the_tool_result() -> None:
    payload = user("What's the weather in Paris? Call the tool.", tools=[GET_WEATHER])
    first = _chat(payload, None).choices[0].message
    [call] = first.tool_calls or []
    assert call.type == "function" and orjson.loads(call.function.arguments) == {"city": "Paris"}
    result = '{"temperature": 18, "conditions": "sunny"}'
    payload["messages"] += [first.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": result}]
    final = _chat(payload, None)
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    content = final.choices[0].message.content or ""
    assert result in content and "get_weather" in content
    # The earlier call is prompt text now.
    assert final.usage is not None
    assert final.usage.prompt_tokens == prompt_tokens(payload) > prompt_tokens(user(payload["messages"][0]["content"],
                                                                                    tools=[GET_WEATHER]))
    # Even when a tool is required: after a result the model answers (an agent loop must terminate).
    assert _chat({**payload, "tool_choice": "required"}, None).choices[0].message.content == content
    # A structured final answer carries the result too.
    structured = _chat({**payload, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}}, None)
    assert result in orjson.loads(structured.choices[0].message.content or "")["answer"]


# The mock provider's helpers as they were before this module (mock.py), kept as the reference they must match.
def _old_count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _old_text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _old_prompt_tokens(payload: dict[str, Any]) -> int:
    return sum(4 + _old_count_tokens(_old_text_of(m.get("content"))) for m in payload["messages"]) + 3


def _old_reply_words(payload: dict[str, Any], limit: int | None) -> tuple[list[str], str]:
    last = next((_old_text_of(m.get("content")) for m in reversed(payload["messages"]) if m.get("role") == "user"), "")
    words = ("This is a mock response to: " + (last or "your request")).split()
    words = (words * (24 // len(words) + 1))[: max(len(words), 8)]
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if limit is not None:
        out: list[str] = []
        used = 0
        for piece in pieces:
            used += _old_count_tokens(piece)
            if used > limit:
                return out or [pieces[0][: limit * 4]], "length"
            out.append(piece)
    return pieces, "stop"


@pytest.mark.parametrize("payload", [
    user("Hello there"), user(""), user("x"), {"messages": [{"role": "system", "content": "x" * 17}]},
    {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": [
        {"type": "text", "text": "Describe"}, {"type": "text", "text": "this picture"}]}]},
], ids=["plain", "empty", "one letter", "no user", "parts"])
def test_the_mock_providers_helpers_keep_their_behaviour(payload: dict[str, Any]) -> None:
    for limit in (None, 0, 1, 3, 100):
        assert mock_text.reply_words(payload, limit) == _old_reply_words(payload, limit)
    assert mock_text.prompt_tokens(payload) == _old_prompt_tokens(payload)
    for text in ("", "a", "abcd", "abcde", "héllo wörld"):
        assert count_tokens(text) == _old_count_tokens(text)
    words, _ = mock_text.reply_words(payload, None)
    assert _chat(payload, None).choices[0].message.content == "".join(words)


def test_n_gives_different_choices() -> None:
    answer = _chat(user("Hello", n=4), None)
    contents = [c.message.content for c in answer.choices]
    assert len(set(contents)) == 4 and all(c and "Hello" in c for c in contents)


@pytest.mark.parametrize("top", [None, 0, 1, 5, 20])
def test_logprobs(top: int | None) -> None:
    fields: dict[str, Any] = {"logprobs": True} if top is None else {"logprobs": True, "top_logprobs": top}
    choice = _chat(user("Tell me about tokens", **fields), None).choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    assert len(entries) == text_tokens(choice.message.content or "")
    for entry in entries:
        assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == (top or 0)
        assert len({t.token for t in entry.top_logprobs}) == len(entry.top_logprobs)
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert all(t.logprob <= 0 for t in entry.top_logprobs)
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-6
    assert _chat(user("Tell me about tokens"), None).choices[0].logprobs is None


@pytest.mark.parametrize(("payload", "limit", "content", "finish"), [
    (user("one two three four", stop="three"), None, "This is a mock response to: one two ", "stop"),
    (user("one two three four", stop=["zzz", "two"]), None, "This is a mock response to: one ", "stop"),
    (user("one two", stop=["This"]), None, "", "stop"),
    (user("abc"), 2, "This is", "length"),
    (user("abc"), 0, "", "length"),
], ids=["stop", "first stop hit", "stop at once", "length", "zero"])
def test_stop_and_length(payload: dict[str, Any], limit: int | None, content: str, finish: str) -> None:
    choice = _chat(payload, limit).choices[0]
    assert (choice.message.content, choice.finish_reason) == (content, finish)


def test_json_modes() -> None:
    answer = _chat(user("Give me JSON", response_format={"type": "json_object"}), None)
    value = orjson.loads(answer.choices[0].message.content or "")
    assert isinstance(value, dict) and "Give me JSON" in value["response"]
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
              "required": ["items"], "additionalProperties": False}
    cut = _chat(user("x", response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}), 2)
    assert cut.choices[0].finish_reason == "length"  # cut JSON, as OpenAI would send it


# -- legacy completions ------------------------------------------------------------------------------------------


TEXTS: list[tuple[str, dict[str, Any], int | None, int]] = [
    ("string", {"prompt": "Say this is a test"}, None, 1),
    ("strings and n", {"prompt": ["first prompt", "second prompt"], "n": 2}, None, 4),
    ("token ids", {"prompt": [1, 2, 3]}, 50, 1),
    ("lists of ids", {"prompt": [[1, 2], [3, 4, 5]]}, 50, 2),
    ("echo and logprobs", {"prompt": "Once upon a time", "echo": True, "logprobs": 2}, 100, 1),
    ("stop", {"prompt": "alpha beta", "stop": ["beta"]}, 100, 1),
]


@pytest.mark.parametrize(("payload", "limit", "count"), [(p, m, c) for _, p, m, c in TEXTS],
                         ids=[n for n, _, _, _ in TEXTS])
def test_text_completions(payload: dict[str, Any], limit: int | None, count: int) -> None:
    raw = text_completion(payload, "mock-text", "cmpl-1", 1, limit)
    answer = Completion.model_validate(raw)
    assert answer.object == "text_completion" and [c.index for c in answer.choices] == list(range(count))
    echo = payload["prompt"] if payload.get("echo") else ""
    generated = [c.text[len(echo):] for c in answer.choices]
    assert all(c.text.startswith(echo) for c in answer.choices)
    assert answer.usage is not None
    assert answer.usage.completion_tokens == sum(text_tokens(g) for g in generated)
    if limit is None:  # OpenAI's default of 16 tokens
        assert all(c.finish_reason == "length" or count_tokens(c.text) <= 16 for c in answer.choices)
    for choice in answer.choices:
        if payload.get("logprobs") is not None:
            assert choice.logprobs is not None and choice.logprobs.tokens is not None
            assert "".join(choice.logprobs.tokens) == choice.text[len(echo):]
            assert choice.logprobs.text_offset is not None and choice.logprobs.text_offset[0] == len(echo)
            assert all(len(t) == 2 for t in choice.logprobs.top_logprobs or [])
        else:
            assert choice.logprobs is None
    if payload.get("stop"):
        assert "beta" not in answer.choices[0].text[len("alpha beta"):]
    # The stream: one choice per chunk, finish_reason null until each choice's last chunk, then usage.
    chunks = text_completion_chunks(payload, "mock-text", "cmpl-1", 1, limit)
    *body, last = chunks
    assert last["choices"] == [] and last["usage"] == raw["usage"]
    texts = [""] * count
    finishes: list[str | None] = [None] * count
    for chunk in body:
        [c] = chunk["choices"]
        assert finishes[c["index"]] is None
        texts[c["index"]] += c["text"]
        finishes[c["index"]] = c["finish_reason"]
        # The SDK reads stream chunks leniently; its Completion type insists on a finish_reason.
        Completion.model_validate({**chunk, "choices": [{**c, "finish_reason": c["finish_reason"] or "stop"}]})
    assert texts == [c.text for c in answer.choices] and finishes == [c.finish_reason for c in answer.choices]
    assert text_completion(payload, "m", "i", 1, limit) == text_completion(payload, "m", "i", 1, limit)


@pytest.mark.parametrize("prompt", [None, [], 3, [1, "a"], [[1], "a"]])
def test_bad_prompts(prompt: Any) -> None:
    with pytest.raises(ValueError, match="prompt"):
        text_completion({"prompt": prompt}, "m", "i", 1, None)


# -- embeddings ------------------------------------------------------------------------------------------------------


EMBEDDINGS: list[tuple[str, Any, int]] = [
    ("string", "The quick brown fox", 1),
    ("strings", ["a cat", "a dog", "a cat"], 3),
    ("token ids", [101, 2023, 102], 1),
    ("lists of ids", [[1, 2, 3], [4, 5]], 2),
]


@pytest.mark.parametrize(("value", "count"), [(v, c) for _, v, c in EMBEDDINGS], ids=[n for n, _, _ in EMBEDDINGS])
@pytest.mark.parametrize("dims", [None, 8, 256])
def test_embeddings(value: Any, count: int, dims: int | None) -> None:
    payload: dict[str, Any] = {"input": value} if dims is None else {"input": value, "dimensions": dims}
    raw = embeddings(payload, "mock-embed", 256)
    answer = CreateEmbeddingResponse.model_validate(raw)
    assert answer.object == "list" and answer.model == "mock-embed" and len(answer.data) == count
    for i, item in enumerate(answer.data):
        assert item.index == i and item.object == "embedding" and len(item.embedding) == (dims or 256)
        assert abs(math.sqrt(sum(x * x for x in item.embedding)) - 1) < 1e-5
    tokens = sum(count_tokens(v) for v in ([value] if isinstance(value, str) else value) if isinstance(v, str)) or (
        len(value) if isinstance(value[0], int) else sum(map(len, value)))
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    # base64: little-endian float32, decoded exactly as the SDK does it.
    encoded = embeddings({**payload, "encoding_format": "base64"}, "mock-embed", 256)
    for float_item, b64_item in zip(raw["data"], encoded["data"], strict=True):
        assert isinstance(b64_item["embedding"], str)
        # The same float32 numbers (the floats are written with the nine digits that name a float32).
        assert base64.b64decode(b64_item["embedding"]) == array.array("f", float_item["embedding"]).tobytes()
    # The SDK asks for base64 when the caller names no format, builds the response unvalidated, then decodes.
    decoded = parse_embedding_response(CreateEmbeddingResponse.construct(**encoded), encoding_format=openai.omit)
    for got, want in zip(decoded.data, answer.data, strict=True):
        assert array.array("f", got.embedding) == array.array("f", want.embedding)
    assert embeddings(payload, "mock-embed", 256) == raw


def _cosine(a: str, b: str) -> float:
    [x, y] = (d["embedding"] for d in embeddings({"input": [a, b]}, "e", 64)["data"])
    return float(sum(p * q for p, q in zip(x, y, strict=True)))


def test_embeddings_are_stable_and_similar_for_similar_texts() -> None:
    same = embeddings({"input": ["hello world", "other", "hello world"]}, "e", 32)["data"]
    assert same[0]["embedding"] == same[2]["embedding"] != same[1]["embedding"]
    assert _cosine("the cat sat on the mat", "the cat sat on a mat") > _cosine("the cat sat on the mat",
                                                                                 "quarterly revenue grew")


@pytest.mark.parametrize(("payload", "match"), [
    ({"input": ""}, "input"), ({"input": []}, "input"), ({"input": [1, "a"]}, "input"), ({"input": None}, "input"),
    ({"input": "x", "dimensions": 0}, "dimensions"), ({"input": "x", "dimensions": 65}, "dimensions"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
])
def test_bad_embedding_requests(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        embeddings(payload, "e", 64)


# -- moderations ----------------------------------------------------------------------------------------------------


CATEGORY_KEYS = {f.alias or n for n, f in Moderation.model_fields["categories"].annotation.model_fields.items()}  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "flags"), [
    ("Have a lovely day", [set()]),
    ("I will kill you", [{"violence", "harassment", "harassment/threatening"}]),
    (["hello", "I want to die"], [set(), {"self-harm", "self-harm/intent"}]),
    ([{"type": "text", "text": "a massacre"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
     [{"violence"}]),
    ("skills and a stable kill switch", [set()]),
], ids=["clean", "threat", "list", "multi-modal", "word boundaries"])
def test_moderation(value: Any, flags: list[set[str]]) -> None:
    raw = moderation({"input": value}, "omni-moderation-latest")
    answer = ModerationCreateResponse.model_validate(raw)
    assert answer.model == "omni-moderation-latest" and answer.id.startswith("modr-")
    assert len(answer.results) == len(flags)
    for result, wanted in zip(raw["results"], flags, strict=True):
        assert set(result["categories"]) == set(result["category_scores"]) == \
            set(result["category_applied_input_types"]) == CATEGORY_KEYS
        assert {k for k, v in result["categories"].items() if v} == wanted and result["flagged"] == bool(wanted)
        assert all(0 <= s <= 1 for s in result["category_scores"].values())
        assert all((s > 0.5) == result["categories"][k] for k, s in result["category_scores"].items())
    image = isinstance(value, list) and isinstance(value[0], dict)
    assert ("image" in raw["results"][0]["category_applied_input_types"]["violence"]) == image
    assert moderation({"input": value}, "m") == moderation({"input": value}, "m")


# -- Anthropic token counting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"model": "claude", "messages": [{"role": "user", "content": "Hello, Claude"}]},
    {"model": "claude", "system": "You are terse.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18C, sunny"}]}],
     "tools": [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_PARAMS}]},
], ids=["plain", "system, tools and a tool round"])
def test_count_message_tokens_matches_the_prompt_the_mock_reports(body: dict[str, Any]) -> None:
    translated = openai_request({**body, "max_tokens": 64})
    assert isinstance(translated, dict)
    assert count_message_tokens(body) == prompt_tokens(translated) == _chat(translated, None).usage.prompt_tokens  # type: ignore[union-attr]
    if "tools" in body:
        assert count_message_tokens(body) > count_message_tokens({k: v for k, v in body.items() if k != "tools"})
    assert count_message_tokens({"messages": "not a list"}) > 0  # untranslatable: still an estimate
