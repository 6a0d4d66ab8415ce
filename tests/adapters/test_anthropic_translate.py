"""The OpenAI <-> Anthropic translations are pure: table-driven, no event loop, no sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.anthropic_to_hub import EventWriter, anthropic_message, openai_request
from dataplane.translate.hub_to_anthropic import ChunkTranslator, anthropic_request, openai_completion
from tests.fakes.anthropic_upstream import check

pytestmark = pytest.mark.pure

USER: dict[str, Any] = {"role": "user", "content": "Hi"}
WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}


def outbound(**fields: Any) -> dict[str, Any] | Untranslatable:
    return anthropic_request({"model": "route", "messages": [USER], **fields}, "claude-x", 1000, False)


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"model": "claude-x", "max_tokens": 1000, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hi"}]}]}),
    ({"max_tokens": 50}, {"max_tokens": 50}),
    ({"max_tokens": 50, "max_completion_tokens": 70}, {"max_tokens": 70}),
    ({"temperature": 1.7, "top_p": 0.5}, {"temperature": 1.0, "top_p": 0.5}),
    ({"stop": "END"}, {"stop_sequences": ["END"]}),
    ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
    ({"user": "u-42"}, {"metadata": {"user_id": "u-42"}}),
    ({"tools": [WEATHER_TOOL]}, {"tools": [{"name": "weather", "description": "Weather in a city",
                                            "input_schema": WEATHER_TOOL["function"]["parameters"]}]}),
    ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, {"tool_choice": {"type": "any"}}),
    ({"tools": [WEATHER_TOOL], "tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "weather"}}},
     {"tool_choice": {"type": "tool", "name": "weather"}}),
    ({"tools": [WEATHER_TOOL], "parallel_tool_calls": False},
     {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
])
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = outbound(**fields)
    assert isinstance(body, dict)
    assert {k: body.get(k) for k in expected} == expected
    assert check(body) is None, "the real API would refuse this body"
    for leaked in ("stream_options", "n", "user", "parallel_tool_calls", "max_completion_tokens", "stop"):
        assert leaked not in body


def test_request_conversation_with_system_tools_and_images() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "18C"}]},
        {"role": "user", "content": "Thanks"},
    ]
    body = anthropic_request({"model": "r", "messages": messages, "tools": [WEATHER_TOOL]}, "claude-x", 0, True)
    assert isinstance(body, dict)
    assert check(body) is None
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["max_tokens"] == 4096 and body["stream"] is True
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}}]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "-3C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "18C"},
        {"type": "text", "text": "Thanks"}]


@pytest.mark.parametrize(("payload", "param"), [
    ({"n": 2}, "n"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0]"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}, "messages[0]"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools[0]"),
])
def test_request_untranslatable(payload: dict[str, Any], param: str) -> None:
    result = anthropic_request({"model": "r", "messages": [USER], **payload}, "claude-x", 100, False)
    assert isinstance(result, Untranslatable)
    assert result.param == param


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
])
def test_completion_finish_reason(stop_reason: str, finish: str) -> None:
    message = {"id": "msg_1", "type": "message", "model": "claude-x", "content": [{"type": "text", "text": "ok"}],
               "stop_reason": stop_reason, "usage": {"input_tokens": 5, "output_tokens": 2}}
    assert openai_completion(message, 7)["choices"][0]["finish_reason"] == finish


def test_completion_with_tool_use_and_cache_usage() -> None:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "stop_reason": "tool_use",
               "content": [{"type": "text", "text": "Checking."},
                           {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}],
               "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                         "output_tokens": 30}}
    completion = openai_completion(message, 7)
    reply = completion["choices"][0]["message"]
    assert reply["content"] == "Checking."
    assert reply["tool_calls"] == [{"id": "toolu_1", "type": "function",
                                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]
    assert completion["usage"] == {"prompt_tokens": 130, "completion_tokens": 30, "total_tokens": 160,
                                   # cache writes are billed at their own rate: Tollway's extension of the usage
                                   "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20,
                                                             "cache_write_1h_tokens": 0}}
    assert completion["object"] == "chat.completion" and completion["created"] == 7


def anthropic_stream() -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
                                              "model": "claude-x", "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": 12, "cache_read_input_tokens": 4,
                                                        "output_tokens": 1}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " check."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_9",
                                                                      "name": "weather", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"city": '}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 25}},
        {"type": "message_stop"},
    ]


def test_stream_translation() -> None:
    translator = ChunkTranslator(created=9, model="fallback")
    chunks: list[dict[str, Any]] = []
    for event in anthropic_stream():
        out = translator.feed(event)
        assert not isinstance(out, StreamError)
        chunks += [orjson.loads(c) for c in out]
    assert translator.finished
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "msg_s" and c["model"] == "claude-x"
               for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "Let me check."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "toolu_9", "type": "function",
                        "function": {"name": "weather", "arguments": ""}}
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"city": "Oslo"}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 16, "completion_tokens": 25, "total_tokens": 41,
                                   "prompt_tokens_details": {"cached_tokens": 4}}


def test_stream_error_event_is_a_value() -> None:
    translator = ChunkTranslator(created=9, model="m")
    assert translator.feed(anthropic_stream()[0])
    error = translator.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert error == StreamError("overloaded_error", "Overloaded")
    assert not translator.finished


def test_inbound_request() -> None:
    body = {
        "model": "chat", "max_tokens": 300, "system": [{"type": "text", "text": "Be brief."}],
        "temperature": 0.2, "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "stream": True,
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "AAA="}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "t1", "name": "weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "-3C"},
                                         {"type": "text", "text": "And tomorrow?"}]},
        ],
    }
    payload = openai_request(body)
    assert isinstance(payload, dict)
    assert payload["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA="}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "-3C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert payload["tools"] == [{"type": "function", "function": {"name": "weather", "description": "d",
                                                                  "parameters": {"type": "object"}}}]
    assert payload["tool_choice"] == "required" and payload["parallel_tool_calls"] is False
    assert payload["stop"] == ["END"] and payload["user"] == "u1" and payload["max_tokens"] == 300
    assert payload["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("body", "param"), [
    ([], None),
    ({"max_tokens": 5, "messages": [USER]}, "model"),
    ({"model": "m", "messages": [USER]}, "max_tokens"),
    ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
     "messages.0.content"),
    ({"model": "m", "max_tokens": 5, "messages": [USER], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
])
def test_inbound_request_refused(body: Any, param: str | None) -> None:
    result = openai_request(body)
    assert isinstance(result, Untranslatable)
    assert result.param == param


def test_inbound_message() -> None:
    completion = {"id": "chatcmpl-1", "model": "gpt-x", "choices": [{"index": 0, "finish_reason": "tool_calls",
                  "message": {"role": "assistant", "content": "Sure.", "tool_calls": [
                      {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}}],
                  "usage": {"prompt_tokens": 50, "completion_tokens": 9,
                            "prompt_tokens_details": {"cached_tokens": 20}}}
    assert anthropic_message(completion) == {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
        "content": [{"type": "text", "text": "Sure."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 9, "cache_read_input_tokens": 20,
                  "cache_creation_input_tokens": 0}}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.split(b"\n\n"):
        if frame:
            kind, data = frame.split(b"\n")
            assert kind.startswith(b"event: ") and data.startswith(b"data: ")
            parsed = orjson.loads(data[6:])
            assert parsed["type"] == kind[7:].decode()
            events.append((parsed["type"], parsed))
    return events


def test_inbound_stream() -> None:
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    writer = EventWriter(model="chat")
    raw = b"".join(b"".join(writer.feed(c)) for c in [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_2", "type": "function",
                               "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        orjson.dumps({**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}}),
    ]) + b"".join(writer.finish())
    events = parse_sse(raw)
    assert [kind for kind, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert [e["index"] for k, e in events if k.startswith("content_block")] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["input_tokens"] == 11 and events[-2][1]["usage"]["output_tokens"] == 7


def test_inbound_stream_without_chunks_is_still_well_formed() -> None:
    writer = EventWriter(model="chat")
    assert [k for k, _ in parse_sse(b"".join(writer.finish()))] == [
        "message_start", "ping", "message_delta", "message_stop"]
