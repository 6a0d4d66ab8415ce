"""The mock provider's JSON values (``dataplane.upstream.adapters.mock.schema``): generated values validate
against their schema, take their values from the prompt, and the same input always gives the same output."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from openai.lib._parsing._completions import parse_chat_completion, type_to_response_format_param
from openai.types.chat import ChatCompletion

from dataplane.upstream.adapters.mock.model import chat_completion
from dataplane.upstream.adapters.mock.schema import schema_instance
from tests.adapters.mock_schemas import SCHEMAS, WEATHER_PARAMS, Report, schema_errors

pytestmark = pytest.mark.pure

# -- the validator itself ------------------------------------------------------------------------------------------


def test_the_validator_rejects_what_it_should() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 2}}, "required": ["a"],
              "additionalProperties": False}
    assert schema_errors({"a": 3}, schema) == []
    assert schema_errors({"a": 1}, schema) and schema_errors({}, schema) and schema_errors({"a": 2, "b": 1}, schema)
    assert schema_errors({"a": True}, schema) and schema_errors("x", {"type": "string", "format": "date"})



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


def test_strict_pydantic_schemas_parse() -> None:
    # What client.beta.chat.completions.parse(response_format=Report) sends, parsed back by the SDK.
    response_format = type_to_response_format_param(Report)
    payload = {"messages": [{"role": "user", "content": "Report the weather in Oslo"}],
               "response_format": response_format}
    answer = ChatCompletion.model_validate(chat_completion(payload, "mock", "chatcmpl-1", 1, None))
    parsed = parse_chat_completion(response_format=Report, input_tools=openai.omit, chat_completion=answer)
    report = parsed.choices[0].message.parsed
    assert isinstance(report, Report) and report.readings[0].city == "Oslo" and 3 <= report.count <= 9
