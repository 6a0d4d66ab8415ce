"""The hub -> Responses API answer translations, checked against the openai SDK itself: every Response validates as
``openai.types.responses.Response`` (with no field the schema lacks) and comes back field for field, and the SDK's own
client reads it back. Pure: the client talks to an in-memory transport, no socket, no event loop.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.translate.hub_to_responses import response_object
from tests.translate.responses_cases import (
    REQUEST,
    RESPONSES_USAGE,
    RID,
    USAGE,
    WEATHER,
    as_response,
    completion,
    sdk_client,
)

pytestmark = pytest.mark.pure


def test_response_text_and_usage() -> None:
    obj = response_object(completion({"content": "Hello!"}), REQUEST, RID, 1700000000)
    parsed = as_response(obj)
    assert parsed.output_text == "Hello!"
    assert obj["output"] == [{"type": "message", "id": "msg_0123abc_0", "status": "completed", "role": "assistant",
                              "content": [{"type": "output_text", "text": "Hello!", "annotations": [],
                                           "logprobs": []}]}]
    assert obj["usage"] == RESPONSES_USAGE
    assert {k: obj[k] for k in ("id", "object", "created_at", "status", "model", "store", "error",
                                "incomplete_details", "previous_response_id", "truncation")} == {
        "id": RID, "object": "response", "created_at": 1700000000, "status": "completed", "model": "gpt-x-2025",
        "store": False, "error": None, "incomplete_details": None, "previous_response_id": None,
        "truncation": "disabled"}
    assert {k: obj[k] for k in ("instructions", "temperature", "top_p", "max_output_tokens", "metadata", "user",
                                "tool_choice", "parallel_tool_calls", "text", "reasoning")} == {
        "instructions": "Be brief.", "temperature": 0.5, "top_p": 1.0, "max_output_tokens": 200,
        "metadata": {"team": "a"}, "user": "u-1", "tool_choice": "auto", "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "reasoning": {"effort": "low", "summary": None}}
    assert obj["tools"] == [{"type": "function", "name": "weather", "description": "Weather in a city",
                             "parameters": WEATHER["parameters"], "strict": True}]
    assert "output_text" not in obj  # an SDK property, not a field of the API's object
    assert response_object(completion({"content": "Hello!"}), REQUEST, RID, 1700000000) == obj, "deterministic"


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("stop", "completed", None), ("tool_calls", "completed", None), ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter"),
])
def test_response_status(finish: str, status: str, reason: str | None) -> None:
    obj = response_object(completion({"content": "Once upon"}, finish), {"model": "m", "max_output_tokens": 16},
                          RID, 1)
    parsed = as_response(obj)
    assert parsed.status == status
    assert obj["incomplete_details"] == (None if reason is None else {"reason": reason})
    assert obj["output"][-1]["status"] == ("completed" if reason is None else "incomplete")


def test_response_tool_calls_and_structured_output_echo() -> None:
    fmt = {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}
    request = {"model": "m", "input": "Weather?", "tools": [WEATHER], "parallel_tool_calls": False,
               "tool_choice": {"type": "function", "name": "weather"}, "text": {"format": fmt}}
    obj = response_object(completion({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        "tool_calls"), request, RID, 1)
    parsed = as_response(obj)
    assert parsed.output_text == ""
    assert obj["output"] == [
        {"type": "function_call", "id": "fc_0123abc_0", "call_id": "call_1", "name": "weather",
         "arguments": '{"city":"Oslo"}', "status": "completed"},
        {"type": "function_call", "id": "fc_0123abc_1", "call_id": "call_2", "name": "weather",
         "arguments": '{"city":"Rome"}', "status": "completed"}]
    assert obj["tool_choice"] == {"type": "function", "name": "weather"}
    assert obj["parallel_tool_calls"] is False
    assert obj["text"]["format"] == fmt


def test_response_refusal_logprobs_and_citations() -> None:
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                             "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}]}
    obj = response_object(completion({"content": "Hi", "refusal": "I can't help with that.", "annotations": [
        {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 2, "title": "T",
                                                  "url": "https://example.com"}}]}, logprobs=logprobs),
        {"model": "m", "top_logprobs": 1}, RID, 1)
    parsed = as_response(obj)
    content = obj["output"][0]["content"]
    assert content[0]["annotations"] == [{"type": "url_citation", "start_index": 0, "end_index": 2, "title": "T",
                                          "url": "https://example.com"}]
    assert content[0]["logprobs"] == [{"token": "Hi", "bytes": [72, 105], "logprob": -0.1, "top_logprobs": [
        {"token": "Hi", "bytes": [72, 105], "logprob": -0.1}]}]
    assert content[1] == {"type": "refusal", "refusal": "I can't help with that."}
    assert parsed.output_text == "Hi" and obj["top_logprobs"] == 1


@pytest.mark.parametrize(("usage", "expected"), [
    (USAGE, RESPONSES_USAGE),
    ({"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 0,
                                                                             "cache_write_tokens": 5}},
     {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 5}, "output_tokens": 3,
      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10}),
    ({}, {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
          "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}),
])
def test_response_usage(usage: dict[str, Any], expected: dict[str, Any]) -> None:
    obj = response_object(completion({"content": "x"}, usage=usage), {"model": "m"}, RID, 1)
    as_response(obj)
    assert obj["usage"] == expected


def test_response_without_usage_or_choices() -> None:
    obj = response_object({"model": "m"}, {"model": "m"}, RID, 1)
    assert as_response(obj).usage is None and obj["output"] == []


def test_sdk_reads_the_response() -> None:
    body = orjson.dumps(response_object(completion({"content": "Hello!"}), REQUEST, RID, 1))
    got = sdk_client(200, "application/json", body).responses.create(model="gpt-x", input="Hi")
    assert got.output_text == "Hello!" and got.usage is not None and got.usage.input_tokens_details.cached_tokens == 100
