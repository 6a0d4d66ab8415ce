"""The Bedrock -> hub answer translations are pure: table-driven, no event loop, no sockets.

A Converse answer becomes a chat completion (finish reasons, text, tool calls, the forced JSON tool's input as
content, usage with cache reads and writes), and a ConverseStream event sequence becomes chat-completion chunks the
same way; a stream's exception events come back as values, and events it does not know are ignored.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.translate.anthropic_common import StreamError
from dataplane.translate.bedrock_to_hub import ConverseChunkTranslator, converse_completion, converse_usage
from dataplane.translate.hub_to_bedrock import JSON_TOOL

pytestmark = pytest.mark.pure


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

