"""The Gemini -> hub answer translations are pure: table-driven, no event loop, no sockets.

A GenerateContentResponse becomes a chat completion (finish reasons, text, tool calls, usage with thoughts and cached
content, several candidates as choices), and a streamGenerateContent chunk sequence becomes chat-completion chunks the
same way, usage once at the end; a blocked prompt comes back as ``Blocked``, not an empty answer, and a stream's error
object as a ``StreamError``. Answers to translate back come from the Google fake's answer builder where they can, for
both the Gemini API and Vertex AI, so they are the wire formats the adapters see.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.translate.anthropic_common import StreamError
from dataplane.translate.gemini_to_hub import GeminiChunkTranslator, openai_completion, openai_usage
from dataplane.translate.hub_to_gemini import FINISH_REASONS, Blocked
from tests.fakes.google_upstream import FakeGemini, FakeVertex, prompt_tokens, text_tokens
from tests.translate.gemini_cases import FLASH, USER, WEATHER, answer_of, request

pytestmark = pytest.mark.pure

def chunks_of(fake: FakeGemini | FakeVertex, body: dict[str, Any], model: str = FLASH) -> list[dict[str, Any]]:
    parsed, refused = fake._parse(body, True, "GenerateContentRequest", "v1")
    assert refused is None
    plan = fake._plan(parsed, model, "resp-1")
    chunks: list[dict[str, Any]] = fake._chunks(plan, fake._envelope(model, "resp-1", "2025-01-01T00:00:00Z"))
    return chunks


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
