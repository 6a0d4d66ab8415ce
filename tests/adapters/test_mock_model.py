"""The mock provider's model (``dataplane.upstream.adapters.mock.model``), checked against the official openai SDK:
every answer validates as the SDK's type, streams accumulate (with the SDK's own accumulator) to the non-streamed
answer, generated JSON validates against its schema, and the same input always gives the same output."""


from __future__ import annotations

import math
from typing import Any

import openai
import orjson
import pytest
from openai.lib._parsing._completions import parse_chat_completion
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk, ParsedChatCompletion

from dataplane.upstream.adapters.mock import text as mock_text
from dataplane.upstream.adapters.mock.model import chat_chunks, chat_completion
from dataplane.upstream.adapters.mock.text import count_tokens, prompt_tokens, text_tokens
from tests.adapters.mock_schemas import GET_WEATHER, SCHEMAS, SEARCH, WEATHER_PARAMS, Reading, chat, schema_errors

pytestmark = pytest.mark.pure

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
    answer = chat(payload, limit)
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
    answer = chat(payload, limit)
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
    answer = chat(payload, None)
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
    answer = chat(user("Record a reading in Berlin", tools=[tool], tool_choice="required"), None)
    parsed = parse_chat_completion(response_format=openai.omit, input_tools=[tool], chat_completion=answer)
    [call] = parsed.choices[0].message.tool_calls or []
    arguments = call.function.parsed_arguments
    assert isinstance(arguments, Reading) and arguments.city == "Berlin"


def test_an_agent_loop_ends_with_an_answer_quoting_the_tool_result() -> None:
    payload = user("What's the weather in Paris? Call the tool.", tools=[GET_WEATHER])
    first = chat(payload, None).choices[0].message
    [call] = first.tool_calls or []
    assert call.type == "function" and orjson.loads(call.function.arguments) == {"city": "Paris"}
    result = '{"temperature": 18, "conditions": "sunny"}'
    payload["messages"] += [first.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": result}]
    final = chat(payload, None)
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    content = final.choices[0].message.content or ""
    assert result in content and "get_weather" in content
    # The earlier call is prompt text now.
    assert final.usage is not None
    assert final.usage.prompt_tokens == prompt_tokens(payload) > prompt_tokens(user(payload["messages"][0]["content"],
                                                                                    tools=[GET_WEATHER]))
    # Even when a tool is required: after a result the model answers (an agent loop must terminate).
    assert chat({**payload, "tool_choice": "required"}, None).choices[0].message.content == content
    # A structured final answer carries the result too.
    structured = chat({**payload, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
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
    assert chat(payload, None).choices[0].message.content == "".join(words)


def test_n_gives_different_choices() -> None:
    answer = chat(user("Hello", n=4), None)
    contents = [c.message.content for c in answer.choices]
    assert len(set(contents)) == 4 and all(c and "Hello" in c for c in contents)


@pytest.mark.parametrize("top", [None, 0, 1, 5, 20])
def test_logprobs(top: int | None) -> None:
    fields: dict[str, Any] = {"logprobs": True} if top is None else {"logprobs": True, "top_logprobs": top}
    choice = chat(user("Tell me about tokens", **fields), None).choices[0]
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
    assert chat(user("Tell me about tokens"), None).choices[0].logprobs is None


@pytest.mark.parametrize(("payload", "limit", "content", "finish"), [
    (user("one two three four", stop="three"), None, "This is a mock response to: one two ", "stop"),
    (user("one two three four", stop=["zzz", "two"]), None, "This is a mock response to: one ", "stop"),
    (user("one two", stop=["This"]), None, "", "stop"),
    (user("abc"), 2, "This is", "length"),
    (user("abc"), 0, "", "length"),
], ids=["stop", "first stop hit", "stop at once", "length", "zero"])
def test_stop_and_length(payload: dict[str, Any], limit: int | None, content: str, finish: str) -> None:
    choice = chat(payload, limit).choices[0]
    assert (choice.message.content, choice.finish_reason) == (content, finish)


def test_json_modes() -> None:
    answer = chat(user("Give me JSON", response_format={"type": "json_object"}), None)
    value = orjson.loads(answer.choices[0].message.content or "")
    assert isinstance(value, dict) and "Give me JSON" in value["response"]
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
              "required": ["items"], "additionalProperties": False}
    cut = chat(user("x", response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}), 2)
    assert cut.choices[0].finish_reason == "length"  # cut JSON, as OpenAI would send it
