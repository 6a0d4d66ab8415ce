"""The Responses API <-> hub translations, checked against the openai SDK itself: every Response validates as
``openai.types.responses.Response``, every event as a ``ResponseStreamEvent`` (with no field the schema lacks),
and the SDK's own client, SSE decoder and stream accumulator read the stream back. Pure: the client talks to an
in-memory transport, no socket, no event loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from dataplane.core.validate import HubRequest, validate_chat
from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.hub_to_responses import ResponsesEventWriter, response_object
from dataplane.translate.responses_to_hub import hub_request

pytestmark = pytest.mark.pure

EVENT: pydantic.TypeAdapter[ResponseStreamEvent] = pydantic.TypeAdapter(ResponseStreamEvent)
RID = "resp_0123abc"
WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
CHAT_WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                 "parameters": WEATHER["parameters"], "strict": True}}
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
         "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 12}}
RESPONSES_USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                   "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 150}


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


def completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None,
               logprobs: Any = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "gpt-x-2025",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
                         "logprobs": logprobs}], "usage": usage if usage is not None else USAGE}


def extras(value: Any, where: str = "") -> list[str]:
    """The fields a parsed SDK object holds that its schema does not name: typos, or fields the API lacks."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{where}.{k}" for k in (value.__pydantic_extra__ or {})]
        for name in type(value).model_fields:
            found += extras(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in extras(v, f"{where}[{i}]")]
    return []


def as_response(obj: dict[str, Any], where: str = "") -> Response:
    """``obj`` parsed as the SDK's ``Response``; it must come back field for field."""
    parsed = Response.model_validate(obj)
    # ``store`` is in the API's answers (and asked for here) though this SDK's schema no longer names it.
    assert extras(parsed, where) == [f"{where}.store"]
    assert parsed.to_dict(mode="json") == orjson.loads(orjson.dumps(obj))
    return parsed


REQUEST = {"model": "gpt-x", "input": "Hi", "instructions": "Be brief.", "tools": [WEATHER],
           "tool_choice": "auto", "temperature": 0.5, "max_output_tokens": 200, "metadata": {"team": "a"},
           "user": "u-1", "reasoning": {"effort": "low"}, "store": True}


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


def sdk_client(status: int, content_type: str, body: bytes) -> openai.OpenAI:
    """The openai SDK's client over an in-memory transport that answers every request with ``body``."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)
    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))


def test_sdk_reads_the_response() -> None:
    body = orjson.dumps(response_object(completion({"content": "Hello!"}), REQUEST, RID, 1))
    got = sdk_client(200, "application/json", body).responses.create(model="gpt-x", input="Hi")
    assert got.output_text == "Hello!" and got.usage is not None and got.usage.input_tokens_details.cached_tokens == 100


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, logprobs: Any = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x-2025",
                         "choices": [choice]})


def usage_chunk(usage: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x-2025",
                         "choices": [], "usage": usage})


def call(index: int, arguments: str, id_: str | None = None, name: str | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        fn["name"] = name
    tool: dict[str, Any] = {"index": index, "function": fn}
    if id_ is not None:
        tool.update(id=id_, type="function")
    return {"tool_calls": [tool]}


def stream(request: dict[str, Any], chunks: list[bytes], end: tuple[str, str] | None = None) -> list[bytes]:
    writer = ResponsesEventWriter(RID, request, 1700000000)
    events = [event for payload in chunks for event in writer.feed(payload)]
    events += writer.finish() if end is None else writer.error(*end)
    assert writer.finish() == [] and writer.error("again", "server_error") == [], "a stream ends once"
    return events


def decoded(events: list[bytes]) -> list[dict[str, Any]]:
    """Each event framed as one SSE event whose name is its type, valid as the SDK's ``ResponseStreamEvent``."""
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(events):
        head, data, tail = raw.split(b"\n", 2)
        assert tail == b"\n" and head.startswith(b"event: ") and data.startswith(b"data: ")
        event = orjson.loads(data[6:])
        assert head[7:].decode() == event["type"] and event["sequence_number"] == n
        parsed = EVENT.validate_python(event)
        assert parsed.type == event["type"]
        if "response" in event:
            as_response(event["response"])
        assert extras(parsed) == known_extras(event["type"]), event
        out.append(event)
    return out


def known_extras(kind: str) -> list[str]:
    if kind == "error":
        return [".error"]  # the nested copy of the error, which the SDK raises on
    if kind in ("response.created", "response.in_progress", "response.completed", "response.incomplete",
                "response.failed"):
        return [".response.store"]
    return []


def sdk_stream(events: list[bytes]) -> Iterator[Any]:
    """The SDK's ``responses.stream`` (SSE decoder, ``ResponseStreamState``) reading ``events``."""
    client = sdk_client(200, "text/event-stream", b"".join(events))
    with client.responses.stream(model="gpt-x", input="Hi") as s:
        yield from s
        yield s.get_final_response()


TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
               "response.output_text.done", "response.content_part.done", "response.output_item.done"]


def test_stream_text() -> None:
    events = stream(REQUEST, [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                              chunk({"content": "lo!"}), chunk(finish="stop"), usage_chunk(USAGE)])
    kinds = [e["type"] for e in decoded(events)]
    assert kinds == [*TEXT_EVENTS, "response.completed"]
    *seen, final = list(sdk_stream(events))
    assert [e.type for e in seen] == kinds
    assert final.output_text == "Hello!" and final.status == "completed" and final.id == RID
    assert final.usage is not None and final.usage.to_dict() == RESPONSES_USAGE
    assert final.model == "gpt-x-2025" and final.instructions == "Be brief." and final.store is False


def test_stream_two_parallel_calls_interleaved() -> None:
    chunks = [chunk({"role": "assistant", "content": "Checking."}),
              chunk(call(0, "", "call_1", "weather")), chunk(call(1, '{"ci', "call_2", "weather")),
              chunk(call(0, '{"city":')), chunk(call(1, 'ty":"Rome"}')), chunk(call(0, '"Oslo"}')),
              chunk(finish="tool_calls"), usage_chunk(USAGE)]
    raw = stream(REQUEST, chunks)
    events = decoded(raw)
    assert [(e["type"], e.get("output_index")) for e in events[8:]] == [
        ("response.output_item.added", 1), ("response.output_item.added", 2),
        ("response.function_call_arguments.delta", 2), ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.delta", 2), ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1), ("response.output_item.done", 1),
        ("response.function_call_arguments.done", 2), ("response.output_item.done", 2),
        ("response.completed", None)]
    assert events[8]["item"] == {"type": "function_call", "id": "fc_0123abc_1", "call_id": "call_1",
                                 "name": "weather", "arguments": "", "status": "in_progress"}
    *_, final = list(sdk_stream(raw))
    calls = [(o.call_id, o.name, o.arguments, o.status) for o in final.output if o.type == "function_call"]
    assert calls == [("call_1", "weather", '{"city":"Oslo"}', "completed"),
                     ("call_2", "weather", '{"city":"Rome"}', "completed")]
    assert final.output_text == "Checking."
    # the same answer, not streamed, has the same output: ids and all
    assert events[-1]["response"]["output"] == response_object(completion({"content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        "tool_calls"), REQUEST, RID, 1)["output"]


def test_stream_text_after_a_call_opens_a_new_message() -> None:
    events = decoded(stream({"model": "m"}, [chunk(call(0, "{}", None, "weather")), chunk({"content": "Done."}),
                                             chunk(finish="stop")]))
    added = [(e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.added"]
    assert added == [(0, "function_call"), (1, "message")]
    final = events[-1]["response"]
    assert final["output"][0]["call_id"] == "call_0123abc_0", "a call without an upstream id gets a stable one"
    assert final["usage"] is None, "no usage chunk, no usage"


def test_stream_max_output_tokens_is_incomplete() -> None:
    events = stream({"model": "m", "max_output_tokens": 2}, [chunk({"content": "Once"}), chunk({"content": " upon"}),
                                                             chunk(finish="length"), usage_chunk(USAGE)])
    last = decoded(events)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["max_output_tokens"] == 2
    seen: list[Any] = []
    with pytest.raises(RuntimeError, match=r"response\.completed"):
        seen.extend(sdk_stream(events))  # as with the API: the SDK's final response needs response.completed
    assert seen[-1].type == "response.incomplete" and seen[-1].response.output_text == "Once upon"


def test_stream_refusal_and_logprobs() -> None:
    lp = [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}]
    events = decoded(stream({"model": "m", "top_logprobs": 1}, [
        chunk({"content": "Hi"}, logprobs=lp), chunk({"refusal": "No."}), chunk(finish="stop")]))
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [{"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi",
                                                                                     "logprob": -0.5}]}]
    refusal = [e for e in events if e["type"].startswith("response.refusal")]
    assert [(e["type"], e["content_index"]) for e in refusal] == [("response.refusal.delta", 1),
                                                                  ("response.refusal.done", 1)]
    content = events[-1]["response"]["output"][0]["content"]
    assert content[0]["logprobs"][0]["bytes"] == [72, 105]
    assert content[1] == {"type": "refusal", "refusal": "No."}


def test_stream_error_fails_the_response_and_the_sdk_raises() -> None:
    events = stream(REQUEST, [chunk({"content": "Par"}), chunk(call(0, '{"ci', "call_1", "weather"))],
                    ("upstream connection reset", "upstream_error"))
    parsed = decoded(events)
    failed, error = parsed[-2:]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream connection reset"}
    assert [(o["type"], o["status"]) for o in failed["response"]["output"]] == [("message", "completed"),
                                                                               ("function_call", "incomplete")]
    assert failed["response"]["output"][1]["arguments"] == '{"ci'
    assert {k: error[k] for k in ("type", "code", "message", "param")} == {
        "type": "error", "code": "upstream_error", "message": "upstream connection reset", "param": None}
    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="upstream connection reset"):
        seen.extend(sdk_stream(events))
    assert seen[-1].type == "response.failed"


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "server_error"])
def test_stream_error_before_any_chunk(code: str) -> None:
    parsed = decoded(stream({"model": "m"}, [], (f"failed: {code}", code)))
    assert [e["type"] for e in parsed] == ["response.created", "response.in_progress", "response.failed", "error"]
    assert parsed[2]["response"]["error"]["code"] == code and parsed[2]["response"]["output"] == []


def test_stream_empty_and_garbage() -> None:
    parsed = decoded(stream({"model": "m"}, [b"not json", b"[]", orjson.dumps({"choices": [{"index": 1, "delta": {
        "content": "other choice"}}]})]))
    assert [e["type"] for e in parsed] == ["response.created", "response.in_progress", "response.completed"]
    assert parsed[-1]["response"]["output"] == []


def test_stream_work_per_chunk_is_constant() -> None:
    """A delta's event does not grow with the text before it: nothing is re-serialized per chunk."""
    writer = ResponsesEventWriter(RID, {"model": "m"}, 1)
    sizes = [sum(map(len, writer.feed(chunk({"content": "token "})))) for _ in range(500)][2:]
    assert max(sizes) - min(sizes) <= 2, "only the sequence number's digits grow"
    assert orjson.loads(writer.finish()[-1].split(b"data: ", 1)[1])["response"]["output"][0]["content"][0][
        "text"] == "token " * 500
