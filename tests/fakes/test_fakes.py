"""The fakes' newer endpoints driven by the official SDKs straight at them (no gateway): if the SDKs parse them,
the gateway sees the same wire format the real providers send."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import anthropic
import openai
import pytest
from openai.types import ModerationMultiModalInputParam
from openai.types.responses import FunctionToolParam

from tests.fakes.anthropic_upstream import FakeAnthropic, count_input_tokens, fake_anthropic
from tests.fakes.openai_upstream import (
    FakeOpenAI,
    embedding_vector,
    fake_openai,
    response_input_tokens,
    text_tokens,
    word_pieces,
)

TOKEN = "sk-fake-test-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-test-0123456789"
WEATHER: FunctionToolParam = {"type": "function", "name": "weather", "strict": True, "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with fake_openai(TOKEN) as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key=TOKEN, max_retries=0, timeout=10)
    try:
        yield sdk
    finally:
        await sdk.close()


async def raw_post(fake: FakeOpenAI, path: str, body: Any, token: str = TOKEN) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            fake.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


# --- embeddings -------------------------------------------------------------------------------------------------

async def test_embeddings_float_for_each_input_shape(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    one = await client.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="float")
    assert one.object == "list" and one.model == "text-embedding-3-small"
    assert [e.index for e in one.data] == [0] and one.data[0].object == "embedding"
    assert one.data[0].embedding == embedding_vector("hello world", 8)
    assert sum(x * x for x in one.data[0].embedding) == pytest.approx(1.0, abs=1e-6)
    assert one.usage.prompt_tokens == one.usage.total_tokens == text_tokens("hello world") == 3

    many = await client.embeddings.create(model="text-embedding-3-small", input=["a", "bb", "hello world"],
                                          encoding_format="float", dimensions=5)
    assert [e.embedding for e in many.data] == [embedding_vector(t, 5) for t in ("a", "bb", "hello world")]
    assert many.data[2].embedding != many.data[0].embedding
    assert many.usage.prompt_tokens == 1 + 1 + 3

    ids = await client.embeddings.create(model="text-embedding-3-small", input=[1, 2, 3], encoding_format="float")
    assert ids.data[0].embedding == embedding_vector([1, 2, 3], 8) and ids.usage.prompt_tokens == 3
    nested = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2], [3, 4, 5]],
                                            encoding_format="float")
    assert [e.embedding for e in nested.data] == [embedding_vector([1, 2], 8), embedding_vector([3, 4, 5], 8)]
    assert nested.usage.prompt_tokens == 5

    fake.embedding_dimensions = 16
    wider = await client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert len(wider.data[0].embedding) == 16
    assert [r.path for r in fake.requests] == ["/v1/embeddings"] * 5
    assert fake.requests[1].body["dimensions"] == 5


async def test_embeddings_base64_carries_the_same_vectors(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    texts = ["hello world", "another text"]
    floats = await client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert fake.requests[-1].body["encoding_format"] == "base64"
    assert [e.embedding for e in decoded.data] == [e.embedding for e in floats.data]
    # Asked for explicitly, the SDK hands the base64 string over as it came.
    explicit = await client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="base64")
    for raw, want in zip(explicit.data, floats.data, strict=True):
        packed = base64.b64decode(cast(str, raw.embedding))
        assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == want.embedding


async def test_embeddings_refuse_bad_input_in_openais_envelope(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    for bad in (123, "", [], [1.5], ["a", 1], [[1], []], {"text": "x"}):
        status, body = await raw_post(fake, "/embeddings", {"model": "text-embedding-3-small", "input": bad})
        assert status == 400, bad
        assert body == {"error": {"message": "'$.input' is invalid. Please check the API reference: "
                                             "https://platform.openai.com/docs/api-reference.",
                                  "type": "invalid_request_error", "param": None, "code": None}}
    with pytest.raises(openai.BadRequestError) as err:
        await client.embeddings.create(model="text-embedding-3-small", input=cast(Any, 42))
    assert "'$.input' is invalid" in err.value.message
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        await client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=4)


# --- legacy completions -----------------------------------------------------------------------------------------

async def test_completions_plain(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    done = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert [(c.index, c.text, c.finish_reason) for c in done.choices] == [(0, fake.reply, "stop")]
    words = len(fake.reply.split(" "))
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (text_tokens("Say hello"), words)
    assert done.usage.total_tokens == text_tokens("Say hello") + words

    several = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["one", "two"], n=2,
                                              max_tokens=3)
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert {c.text for c in several.choices} == {"".join(word_pieces(fake.reply)[:3])}
    assert {c.finish_reason for c in several.choices} == {"length"}
    assert several.usage is not None and several.usage.completion_tokens == 4 * 3
    assert fake.requests[-1].path == "/v1/completions" and fake.requests[-1].body["n"] == 2

    echoed = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Q: ", echo=True)
    assert echoed.choices[0].text == "Q: " + fake.reply


async def test_completions_stream_with_usage(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True,
                                             stream_options={"include_usage": True})
    texts, finishes, usages = [], [], []
    async for chunk in stream:
        assert chunk.object == "text_completion"
        for choice in chunk.choices:
            texts.append(choice.text)
            finishes.append(choice.finish_reason)
        if chunk.usage is not None:
            usages.append(chunk.usage)
    assert "".join(texts) == fake.reply and texts[:2] == word_pieces(fake.reply)[:2]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert len(usages) == 1 and usages[0].completion_tokens == len(fake.reply.split(" "))

    plain = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True)
    assert [c.usage async for c in plain if c.usage is not None] == []


# --- responses ------------------------------------------------------------------------------------------------

async def test_responses_plain(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.cached_tokens = 2
    resp = await client.responses.create(model="gpt-4o-mini", input="Tell me a story", instructions="Be brief")
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.status == "completed"
    assert resp.output_text == fake.reply
    message = resp.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text"
    assert resp.usage is not None
    want = response_input_tokens([{"type": "message", "role": "user", "content": "Tell me a story"}], "Be brief")
    assert resp.usage.input_tokens == want == (4 + 4) + (2 + 4) + 3
    assert resp.usage.input_tokens_details.cached_tokens == 2
    assert resp.usage.output_tokens == len(fake.reply.split(" "))
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.to_dict()["store"] is True and resp.id in fake.stored and resp.instructions == "Be brief"
    assert fake.requests[-1].path == "/v1/responses"

    unstored = await client.responses.create(model="gpt-4o-mini", input="x", store=False)
    assert unstored.to_dict()["store"] is False and unstored.id not in fake.stored

    fake.reply = " ".join(f"w{i}" for i in range(20))
    cut = await client.responses.create(model="gpt-4o-mini", input="x", max_output_tokens=16)
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens" and cut.output_text == " ".join(
        f"w{i}" for i in range(16))


async def test_responses_function_call_when_required(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.tool_arguments = '{"city": "Paris"}'
    resp = await client.responses.create(model="gpt-4o-mini", input="Weather in Paris?", tools=[WEATHER],
                                         tool_choice="required")
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "weather" and call.arguments == '{"city": "Paris"}'
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    assert resp.output_text == "" and resp.tools[0].type == "function"

    chatty = await client.responses.create(model="gpt-4o-mini", input="Hi", tools=[WEATHER])
    assert chatty.output[0].type == "message", "auto: the fake answers in text"
    named = await client.responses.create(model="gpt-4o-mini", input="Hi", tools=[WEATHER],
                                          tool_choice={"type": "function", "name": "weather"})
    assert named.output[0].type == "function_call"
    with pytest.raises(openai.BadRequestError, match="must be specified with 'tools'"):
        await client.responses.create(model="gpt-4o-mini", input="Hi", tool_choice="required")

    # The tool's answer goes back as a function_call_output item after the call.
    answered = await client.responses.create(model="gpt-4o-mini", previous_response_id=resp.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert answered.output_text == fake.reply
    assert fake.stored[answered.id].context[-2:] == [resp.output[0].to_dict(), {
        "type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]


EXPECTED_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added"]


async def test_responses_stream_events(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
    events = [event async for event in stream]
    words = len(fake.reply.split(" "))
    assert [e.type for e in events] == EXPECTED_EVENTS + ["response.output_text.delta"] * words + [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first, last = events[0], events[-1]
    assert first.type == "response.created" and first.response.status == "in_progress"
    assert first.response.output == [] and first.response.usage is None
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == fake.reply
    assert last.type == "response.completed" and last.response.id == first.response.id
    assert last.response.output_text == fake.reply and last.response.usage is not None
    assert last.response.usage.output_tokens == words
    assert last.response.id in fake.stored


async def test_responses_stream_wire_framing(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            fake.base_url + "/responses", json={"model": "gpt-4o-mini", "input": "hi", "stream": True},
            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    frames = raw.split("\n\n")
    assert frames[-1] == "" and "[DONE]" not in raw, "a Responses stream has no [DONE] sentinel"
    first = frames[0].split("\n")
    assert first[0] == "event: response.created" and first[1].startswith('data: {"type":"response.created"')
    assert all(f.startswith("event: response.") for f in frames[:-1])
    assert '"obfuscation":' in raw


async def test_responses_stream_helper_and_function_call(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="gpt-4o-mini", input="Say hello") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == fake.reply and final.status == "completed"

    fake.tool_arguments = '{"city": "Oslo"}'
    async with client.responses.stream(model="gpt-4o-mini", input="Weather?", tools=[WEATHER],
                                       tool_choice="required") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == '{"city": "Oslo"}'
    assert call.parsed_arguments == {"city": "Oslo"}, "a strict tool's arguments are parsed by the helper"


async def test_responses_previous_response_id(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="gpt-4o-mini", input="My name is Ada.")
    second = await client.responses.create(model="gpt-4o-mini", input="What is my name?",
                                           previous_response_id=first.id)
    assert second.previous_response_id == first.id
    context = fake.stored[second.id].context
    assert context == [{"type": "message", "role": "user", "content": "My name is Ada."}, first.output[0].to_dict(),
                       {"type": "message", "role": "user", "content": "What is my name?"}]
    assert second.usage is not None and second.usage.input_tokens == response_input_tokens(context)

    with pytest.raises(openai.BadRequestError) as err:
        await client.responses.create(model="gpt-4o-mini", input="Hi", previous_response_id="resp_missing")
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"
    assert err.value.body == {"message": "Previous response with id 'resp_missing' not found.",
                              "type": "invalid_request_error", "param": "previous_response_id",
                              "code": "previous_response_not_found"}

    unstored = await client.responses.create(model="gpt-4o-mini", input="x", store=False)
    with pytest.raises(openai.BadRequestError, match="not found"):
        await client.responses.create(model="gpt-4o-mini", input="y", previous_response_id=unstored.id)

    again = await client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == fake.reply
    await client.responses.delete(first.id)
    assert first.id not in fake.stored
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(first.id)


async def test_responses_stream_dies_mid_way(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    fake.die_after_chunks = 5
    stream = await client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError):
        async for event in stream:
            seen.append(event.type)
    assert seen == [*EXPECTED_EVENTS, "response.output_text.delta"]


# --- moderations ----------------------------------------------------------------------------------------------

async def test_moderations(fake: FakeOpenAI, client: openai.AsyncOpenAI) -> None:
    calm = await client.moderations.create(input="I like tea")
    assert calm.id.startswith("modr-") and calm.model == "omni-moderation-latest"
    result = calm.results[0]
    assert len(calm.results) == 1 and result.flagged is False and result.categories.violence is False
    assert result.category_scores.violence < 0.01 and result.categories.self_harm is False
    assert result.category_applied_input_types is not None
    assert result.category_applied_input_types.violence == ["text"]

    both = await client.moderations.create(model="omni-moderation-latest", input=["I like tea", "I will kill it"])
    assert [r.flagged for r in both.results] == [False, True]
    assert both.results[1].categories.violence is True and both.results[1].category_scores.violence == 0.9

    fake.moderation_triggers = {"hate": "hate"}
    parts: list[ModerationMultiModalInputParam] = [
        {"type": "text", "text": "I hate it"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    mixed = await client.moderations.create(model="omni-moderation-latest", input=parts)
    assert len(mixed.results) == 1 and mixed.results[0].categories.hate is True
    applied = mixed.results[0].category_applied_input_types
    assert applied is not None and applied.violence == ["text", "image"] and applied.hate == ["text"]
    legacy = await client.moderations.create(model="text-moderation-latest", input="x")
    assert legacy.results[0].category_applied_input_types is None
    assert {r.path for r in fake.requests} == {"/v1/moderations"}


# --- what every endpoint shares -------------------------------------------------------------------------------

async def test_every_endpoint_checks_the_token_and_honours_the_knobs(fake: FakeOpenAI) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/embeddings", {"model": "m", "input": "x"}), ("/completions", {"model": "m", "prompt": "x"}),
        ("/responses", {"model": "m", "input": "x"}), ("/moderations", {"input": "x"})]
    for path, body in calls:
        status, error = await raw_post(fake, path, body, token="sk-wrong")
        assert status == 401 and error["error"]["code"] == "invalid_api_key", path
        assert fake.requests[-1].path == "/v1" + path and fake.requests[-1].body == body
        fake.fail_status, fake.fail_times = 503, 1
        status, error = await raw_post(fake, path, body)
        assert status == 503 and error["error"]["type"] == "server_error" and fake.fail_times == 0
        fake.fail_status, fake.fail_times = 429, 1
        status, error = await raw_post(fake, path, body)
        assert status == 429 and error["error"]["code"] == "rate_limit_exceeded"
        status, _ = await raw_post(fake, path, body)
        assert status == 200, path
    assert len(fake.requests) == 4 * len(calls)

    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key=TOKEN, max_retries=0, timeout=0.3)
    try:
        fake.delay_s = 1.0
        with pytest.raises(openai.APITimeoutError):
            await sdk.embeddings.create(model="m", input="x")
        fake.delay_s, fake.drop_connection = 0.0, True
        with pytest.raises(openai.APIConnectionError):
            await sdk.responses.create(model="m", input="x")
    finally:
        await sdk.close()


async def test_a_body_that_is_not_json_is_refused(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            fake.base_url + "/responses", data=b"{not json", headers={"Authorization": f"Bearer {TOKEN}",
                                                                        "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"].startswith("We could not parse the JSON body")


# --- anthropic count_tokens -----------------------------------------------------------------------------------

@pytest.fixture
async def claude() -> AsyncIterator[tuple[FakeAnthropic, anthropic.AsyncAnthropic]]:
    async with fake_anthropic(ANTHROPIC_KEY) as server:
        sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10)
        try:
            yield server, sdk
        finally:
            await sdk.close()


async def test_anthropic_count_tokens(claude: tuple[FakeAnthropic, anthropic.AsyncAnthropic]) -> None:
    server, sdk = claude
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hello, Claude, how are you?"}]
    counted = await sdk.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=messages,
                                              system="You are terse.")
    body = server.requests[-1].body
    assert server.requests[-1].path == "/v1/messages/count_tokens" and "max_tokens" not in body
    assert counted.input_tokens == count_input_tokens(body) == count_input_tokens(
        {"messages": messages, "system": "You are terse."})
    assert server.requests[-1].headers.get("anthropic-version")

    tools: list[anthropic.types.ToolParam] = [{"name": "weather", "input_schema": {"type": "object"}}]
    with_tools = await sdk.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=messages, tools=tools)
    assert with_tools.input_tokens == count_input_tokens({"messages": messages, "tools": tools})
    assert with_tools.input_tokens > count_input_tokens({"messages": messages})

    message = await sdk.messages.create(model="claude-3-5-haiku-20241022", max_tokens=100, messages=messages,
                                        system="You are terse.")
    assert message.usage.input_tokens == counted.input_tokens, "count_tokens predicts what the message reports"


async def test_anthropic_count_tokens_refusals(claude: tuple[FakeAnthropic, anthropic.AsyncAnthropic]) -> None:
    server, sdk = claude
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
        await sdk.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=messages,
                                        extra_body={"max_tokens": 10})
    with pytest.raises(anthropic.BadRequestError, match="text content blocks must be non-empty"):
        await sdk.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=[{"role": "user", "content": ""}])
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.count_tokens(model="claude-nope", messages=messages)
    wrong = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-wrong", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError):
            await wrong.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=messages)
    finally:
        await wrong.close()
    async with aiohttp.ClientSession() as session, session.post(
            server.base_url + "/v1/messages/count_tokens", headers={"x-api-key": ANTHROPIC_KEY},
            json={"model": "claude-3-5-haiku-20241022", "messages": messages}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["message"] == "anthropic-version: header is required"
    server.fail_status, server.fail_times = 529, 1
    with pytest.raises(anthropic.APIStatusError) as err:
        await sdk.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=messages)
    assert err.value.status_code == 529
    assert all(r.path == "/v1/messages/count_tokens" for r in server.requests) and len(server.requests) == 6
