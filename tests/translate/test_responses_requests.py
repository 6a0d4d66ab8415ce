"""The Responses API -> hub request translations. Pure: no socket, no event loop.

Every request body translated here is one the hub itself takes (``validate_chat``): string and item input,
instructions, images, function tools and a second turn of an agent loop, and the request fields that map to chat
completions (structured output, limits, reasoning, logprobs, streaming, tool choice); fields it lacks are dropped
without leaking, and what cannot be done statelessly (previous responses, conversations, hosted tools, prompt
templates) or is malformed is refused as ``Untranslatable`` with the offending param.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.core.validate import HubRequest, validate_chat
from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.responses_to_hub import hub_request
from tests.translate.responses_cases import WEATHER

pytestmark = pytest.mark.pure

CHAT_WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                 "parameters": WEATHER["parameters"], "strict": True}}


def translated(body: dict[str, Any]) -> dict[str, Any]:
    payload = hub_request(body)
    assert isinstance(payload, dict), payload
    checked = validate_chat(payload, len(orjson.dumps(payload)))
    assert isinstance(checked, HubRequest), f"the hub refuses the translation: {checked}"
    return payload


def test_string_input() -> None:
    assert translated({"model": "gpt-x", "input": "Hi"}) == {
        "model": "gpt-x", "messages": [{"role": "user", "content": "Hi"}]}


def test_items_with_instructions() -> None:
    payload = translated({"model": "gpt-x", "instructions": "Be brief.", "input": [
        {"role": "developer", "content": "Use metric units."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "original"}]},
        {"type": "message", "role": "assistant", "id": "msg_old", "status": "completed",
         "content": [{"type": "output_text", "text": "A cat.", "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]})
    assert payload["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "Thanks"},
    ]


def test_function_tool_loop_turn() -> None:
    """A second turn of an agent loop: the calls the model made and their outputs come back as items."""
    payload = translated({"model": "gpt-x", "tools": [WEATHER], "tool_choice": "required",
                          "parallel_tool_calls": False, "input": [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "weather",
         "arguments": '{"city":"Oslo"}', "status": "completed"},
        {"type": "function_call", "call_id": "call_2", "name": "weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "-3C"},
        {"type": "function_call_output", "call_id": "call_2", "output": [
            {"type": "input_text", "text": "18"}, {"type": "input_text", "text": "C"}]},
    ]})
    assert payload["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "18"},
                                                              {"type": "text", "text": "C"}]},
    ]
    assert payload["tools"] == [CHAT_WEATHER]
    assert payload["tool_choice"] == "required" and payload["parallel_tool_calls"] is False


def test_calls_without_text_make_their_own_assistant_message() -> None:
    payload = translated({"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{}"},
    ], "tools": [WEATHER]})
    assert [(m["role"], len(m.get("tool_calls", []))) for m in payload["messages"]] == [
        ("user", 0), ("assistant", 1), ("tool", 0), ("assistant", 1)]
    assert payload["messages"][1]["content"] is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"text": {"format": {"type": "json_schema", "name": "city", "strict": True, "description": "A city",
                          "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}},
     {"response_format": {"type": "json_schema", "json_schema": {
         "name": "city", "strict": True, "description": "A city",
         "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
    ({"text": {"format": {"type": "json_object"}}}, {"response_format": {"type": "json_object"}}),
    ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, {"response_format": None, "verbosity": "low"}),
    ({"max_output_tokens": 64}, {"max_completion_tokens": 64, "max_tokens": None}),
    ({"temperature": 0.2, "top_p": 0.9, "user": "u-1"}, {"temperature": 0.2, "top_p": 0.9, "user": "u-1"}),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, {"reasoning_effort": "low", "reasoning": None}),
    ({"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
    ({"include": ["message.output_text.logprobs"]}, {"logprobs": True, "include": None}),
    ({"stream": True}, {"stream": True, "stream_options": {"include_usage": True}}),
    ({"stream": False}, {"stream": None, "stream_options": None}),
    ({"tool_choice": {"type": "function", "name": "weather"}, "tools": [WEATHER]},
     {"tool_choice": {"type": "function", "function": {"name": "weather"}}}),
    ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "weather"}]},
      "tools": [WEATHER]},
     {"tool_choice": {"type": "allowed_tools", "allowed_tools": {
         "mode": "auto", "tools": [{"type": "function", "function": {"name": "weather"}}]}}}),
    # chat completions refuses tool_choice and parallel_tool_calls without tools: harmless ones are dropped
    ({"tool_choice": "auto", "parallel_tool_calls": True, "tools": []},
     {"tool_choice": None, "parallel_tool_calls": None, "tools": None}),
    ({"tools": [{"type": "function", "name": "ping", "parameters": None, "strict": None}]},
     {"tools": [{"type": "function", "function": {"name": "ping"}}]}),
])
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    payload = translated({"model": "m", "input": "Hi", **fields})
    assert {k: payload.get(k) for k in expected} == expected


def test_dropped_fields_do_not_leak() -> None:
    dropped = {"store": True, "metadata": {"k": "v"}, "truncation": "auto", "service_tier": "flex",
               "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "safety_identifier": "s",
               "background": False, "max_tool_calls": 3, "stream_options": {"include_obfuscation": False},
               "prompt_cache_retention": "24h", "context_management": [{"type": "compaction"}]}
    assert translated({"model": "m", "input": "Hi", **dropped}) == {
        "model": "m", "messages": [{"role": "user", "content": "Hi"}]}


HOSTED = ["web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use_preview",
          "image_generation", "mcp", "local_shell", "shell", "apply_patch"]


@pytest.mark.parametrize("kind", HOSTED)
def test_hosted_tool_refused(kind: str) -> None:
    refused = hub_request({"model": "m", "input": "Hi", "tools": [WEATHER, {"type": kind}]})
    assert isinstance(refused, Untranslatable)
    assert refused.param == "tools[1].type"
    assert repr(kind) in refused.message and "hosted tools are not supported" in refused.message


def item(**fields: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": "c", "name": "weather", "arguments": "{}", **fields}


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"previous_response_id": "resp_9"}, "previous_response_id", "statelessly"),
    ({"conversation": "conv_1"}, "conversation", "statelessly"),
    ({"background": True}, "background", "statelessly"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "prompt templates"),
    ({"model": ""}, "model", "model"),
    ({"input": []}, "input", "Field required"),
    ({"input": 7}, "input", "string or a list"),
    ({"instructions": ["x"]}, "instructions", "string"),
    ({"input": ["Hi"]}, "input[0]", "object"),
    ({"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, item(),
                item(call_id=None)]}, "input[3].call_id", "call_id"),
    ({"input": [item(name="")]}, "input[0].name", "name"),
    ({"input": [item(arguments={"city": "Oslo"})]}, "input[0].arguments", "JSON string"),
    ({"input": [item(), {"type": "function_call_output", "output": "x"}]}, "input[1].call_id", "call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_image", "image_url": "https://x/y.png"}]}]}, "input[0].output[0]", "text parts"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": None}]}, "input[0].output", "string"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "statelessly"),
    ({"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]}, "input[0].type",
     "'web_search_call'"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "role"),
    ({"input": [{"role": "user", "content": 3}]}, "input[0].content", "content"),
    ({"input": [{"role": "user", "content": ["x"]}]}, "input[0].content[0]", "type"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]}, "input[0].content[0].text",
     "string"),
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "a"},
                                             {"type": "input_image", "file_id": "file-1"}]}]},
     "input[0].content[1].file_id", "file id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].image_url",
     "image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]},
     "input[0].content[0].file_data", "file_data"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input[0].content[0].type", "system"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "input[0].content[0].type", "'input_audio'"),
    ({"tools": [{"type": "custom", "name": "grammar"}]}, "tools[0].type", "only function tools"),
    ({"tools": [{"type": "function", "description": "no name"}]}, "tools[0].name", "name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "{}"}]}, "tools[0].parameters", "schema"),
    ({"tools": ["weather"]}, "tools[0]", "type"),
    ({"tools": {"weather": {}}}, "tools", "list"),
    ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type",
     "'web_search_preview'"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "'auto'"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "mcp"}]}},
     "tool_choice.tools[0]", "function"),
    ({"text": {"format": {"type": "grammar"}}}, "text.format.type", "json_schema"),
    ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name", "name"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "schema"),
    ({"text": "json"}, "text", "object"),
    ({"max_output_tokens": 0}, "max_output_tokens", "positive"),
    ({"max_output_tokens": True}, "max_output_tokens", "positive"),
    ({"top_logprobs": 21}, "top_logprobs", "20"),
    ({"reasoning": "high"}, "reasoning", "object"),
    ({"stream": "yes"}, "stream", "boolean"),
])
def test_refused_with_param(body: dict[str, Any], param: str, words: str) -> None:
    refused = hub_request({"model": "m", "input": "Hi", **body})
    assert isinstance(refused, Untranslatable), refused
    assert refused.param == param
    assert words in refused.message


def test_not_an_object() -> None:
    refused = hub_request([])  # type: ignore[arg-type]
    assert refused == Untranslatable("the request body must be a JSON object")
