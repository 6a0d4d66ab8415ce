"""The official openai and anthropic SDKs' chat through a real data plane to the fake Gemini API and Vertex AI:
completions and streams, tools, generation settings, images, safety blocks and reasoning tokens.

The Gemini providers authenticate with API keys from environment variables, the Vertex one with a throwaway
service account whose key file the fake wrote (its ``token_uri`` is the fake's own OAuth endpoint): google-auth
signs the JWT and fetches the access tokens, as it would against Google. No real Google credentials or settings
from the environment reach the data plane. Every test also checks, at teardown, that neither an API key, an access
token nor the service account's private key appears in any log record (captured at DEBUG, google-auth's included);
the error bodies a client sees are checked where failures are provoked.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionToolParam

from tests.adapters.google_world import API_KEY, CHAT_MODELS, PRICES, World, assert_no_secret, path_of, record
from tests.fakes.google_upstream import prompt_tokens, text_tokens

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"], "additionalProperties": False}}}]


class City(pydantic.BaseModel):
    name: str
    population: int
    districts: list[str]


@pytest.fixture
def world(google_world: World) -> World:
    """``google_world`` (conftest.py): the data plane in front of the fake Gemini API and Vertex AI."""
    return google_world


# --- chat ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_chat_completion(world: World, model: str) -> None:
    fake = world.fake(model)
    raw = await world.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == fake.reply
    assert completion.choices[0].finish_reason == "stop"
    received = fake.requests[-1]
    assert received.path == path_of(model, "generateContent")
    assert received.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert received.body["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]
    # No max_tokens from the client: the deployment's bound, what the budget reserved, holds upstream.
    assert received.body["generationConfig"] == {"maxOutputTokens": 1024}
    if model == "vflash":
        assert received.headers["Authorization"].startswith("Bearer ya29.")
        assert "x-goog-api-key" not in received.headers
    else:
        assert received.headers["x-goog-api-key"] == API_KEY and "key" not in received.query
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_tokens(received.body)
    assert completion.usage.completion_tokens == text_tokens(fake.reply)
    assert raw.headers["x-tollway-deployment"] == model and int(raw.headers["x-tollway-cost-usd-micros"]) > 0
    assert record(world).output_tokens == completion.usage.completion_tokens
    assert record(world).usage_source in ("", "upstream")


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_streaming(world: World, model: str) -> None:
    fake = world.fake(model)
    stream = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], stream=True,
        stream_options={"include_usage": True})
    text, finish, usages, chunks = "", None, [], 0
    async for chunk in stream:
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usages.append(chunk.usage)
    assert text == fake.reply and finish == "stop" and chunks > 3
    # Gemini repeats the cumulative usage on every chunk, Vertex sends it once: the client gets it once, the last.
    assert len(usages) == 1 and usages[0].completion_tokens == text_tokens(fake.reply)
    received = fake.requests[-1]
    assert received.path == path_of(model, "streamGenerateContent") and received.query == {"alt": "sse"}
    assert usages[0].prompt_tokens == prompt_tokens(received.body)
    assert record(world).output_tokens == usages[0].completion_tokens and record(world).stream


async def test_streaming_without_usage_has_a_choice_in_every_chunk(world: World) -> None:
    stream = await world.client().chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Hello"}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks and all(chunk.choices for chunk in chunks)
    assert record(world).input_tokens > 0, "usage is recorded even when the client did not ask for it"


async def test_anthropic_messages_on_gemini(world: World) -> None:
    message = await world.anthropic().messages.create(model="flash", max_tokens=100,
                                                      messages=[{"role": "user", "content": "Hello"}])
    assert message.content[0].type == "text" and message.content[0].text == world.gemini.reply
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == text_tokens(world.gemini.reply)
    assert world.gemini.requests[-1].body["generationConfig"]["maxOutputTokens"] == 100


# --- tools --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [*CHAT_MODELS, "g3"])
async def test_tool_call_round_trip(world: World, model: str) -> None:
    fake = world.fake(model)
    fake.tool_args = {"city": "Oslo", "days": 2}
    client = world.client()
    question = {"role": "user", "content": "Call get_weather for Oslo"}
    first = await client.chat.completions.create(model=model, messages=[question], tools=TOOLS)  # type: ignore[list-item]
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1 and calls[0].type == "function" and calls[0].id
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments) == fake.tool_args
    declared = fake.requests[-1].body["tools"][0]["functionDeclarations"][0]
    assert declared["parameters"] == {"type": "OBJECT", "required": ["city"], "properties": {
        "city": {"type": "STRING"}, "days": {"type": "INTEGER"}}}  # additionalProperties dropped
    second = await client.chat.completions.create(model=model, tools=TOOLS, messages=[
        question,  # type: ignore[list-item]
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0].id, "type": "function",
             "function": {"name": "get_weather", "arguments": calls[0].function.arguments}}]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": -3}'}])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content == fake.reply
    contents = fake.requests[-1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    call_part = contents[1]["parts"][0]
    assert call_part["functionCall"] == {"name": "get_weather", "args": fake.tool_args}
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temperature": -3}}}]
    if model == "g3":
        # Gemini 3 refuses a turn whose call lost its signature: it came back inside the tool call id.
        assert call_part["thoughtSignature"]


async def test_parallel_tool_results_share_one_turn(world: World) -> None:
    tools: list[ChatCompletionToolParam] = [*TOOLS, {"type": "function", "function": {
        "name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    client = world.client()
    question = {"role": "user", "content": "Call get_weather and get_time for Oslo"}
    first = await client.chat.completions.create(model="flash", messages=[question], tools=tools)  # type: ignore[list-item]
    calls = [c for c in first.choices[0].message.tool_calls or [] if c.type == "function"]
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert len({c.id for c in calls}) == 2
    second = await client.chat.completions.create(model="flash", tools=tools, messages=[
        question,  # type: ignore[list-item]
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.function.name,
                                                          "arguments": c.function.arguments}} for c in calls]},
        {"role": "tool", "tool_call_id": calls[0].id, "content": "-3C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "12:00"}])
    assert second.choices[0].message.content == world.gemini.reply
    last = world.gemini.requests[-1].body["contents"][-1]
    assert last == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"result": "-3C"}}},
        {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}}]}


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_streamed_tool_call(world: World, model: str) -> None:
    fake = world.fake(model)
    fake.tool_args = {"city": "Bergen, Norway"}
    stream = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the weather in Bergen?"}], tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    name, arguments, call_id, finish = "", "", "", None
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            assert delta.index == 0
            call_id = delta.id or call_id
            if delta.function is not None:
                name += delta.function.name or ""
                arguments += delta.function.arguments or ""
        if chunk.choices:
            finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) == fake.tool_args and call_id
    assert finish == "tool_calls"
    assert fake.requests[-1].body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


# --- generation settings ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_json_schema_output(world: World, model: str) -> None:
    completion = await world.client().chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "A city, please."}], response_format=City)
    parsed = completion.choices[0].message.parsed
    assert parsed == City(name="fake", population=1, districts=["fake"])
    config = world.fake(model).requests[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "OBJECT", "title": "City", "required": ["name", "population", "districts"],
        "propertyOrdering": ["name", "population", "districts"], "properties": {
            "name": {"type": "STRING", "title": "Name"}, "population": {"type": "INTEGER", "title": "Population"},
            "districts": {"type": "ARRAY", "title": "Districts", "items": {"type": "STRING"}}}}


async def test_json_object_mode(world: World) -> None:
    completion = await world.client().chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content or "") == {"reply": world.gemini.reply}


@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_max_tokens_is_length(world: World, model: str) -> None:
    completion = await world.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content and world.fake(model).reply.startswith(choice.message.content)
    assert completion.usage is not None and completion.usage.completion_tokens <= 4
    assert world.fake(model).requests[-1].body["generationConfig"]["maxOutputTokens"] == 4


async def test_max_tokens_above_the_deployment_limit_is_capped(world: World) -> None:
    await world.client().chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Hello"}], max_completion_tokens=50_000)
    assert world.gemini.requests[-1].body["generationConfig"]["maxOutputTokens"] == 1024


async def test_sampling_settings_and_candidates(world: World) -> None:
    completion = await world.client().chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Hello"}], temperature=0.2, top_p=0.9, n=2,
        stop=["zzz"], seed=7)
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content == world.gemini.reply for c in completion.choices)
    assert world.gemini.requests[-1].body["generationConfig"] == {
        "maxOutputTokens": 1024, "temperature": 0.2, "topP": 0.9, "stopSequences": ["zzz"], "candidateCount": 2,
        "seed": 7}


async def test_image_as_a_data_url(world: World) -> None:
    await world.client().chat.completions.create(model="flash", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert world.gemini.requests[-1].body["contents"][0]["parts"] == [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]


async def test_remote_image_is_refused_before_the_upstream(world: World) -> None:
    sent = len(world.gemini.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        await world.client().chat.completions.create(model="flash", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "data URL" in str(refused.value.body) and len(world.gemini.requests) == sent


async def test_google_400_reaches_the_client_with_its_message(world: World) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await world.client().chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "Hello"}], stop=["a", "b", "c", "d", "e", "f"])
    body: Any = refused.value.body
    assert "stop_sequences must be at most 5" in body["message"] and body["code"] == "invalid_argument"
    assert_no_secret(world, body)


# --- safety -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("stream", [False, True])
async def test_blocked_prompt_is_a_400_content_filter(world: World, model: str, stream: bool) -> None:
    world.fake(model).block_prompt = "PROHIBITED_CONTENT"
    with pytest.raises(openai.BadRequestError) as refused:
        answer = await world.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Something bad"}], stream=stream)
        if stream:
            async for _ in answer:  # type: ignore[union-attr]
                pass
    assert refused.value.code == "content_filter" and refused.value.status_code == 400
    assert "PROHIBITED_CONTENT" in str(refused.value.body)


async def test_blocked_prompt_through_the_messages_api(world: World) -> None:
    world.gemini.block_prompt = True
    with pytest.raises(anthropic.BadRequestError) as refused:
        await world.anthropic().messages.create(model="flash", max_tokens=50,
                                                messages=[{"role": "user", "content": "Something bad"}])
    assert "SAFETY" in str(refused.value)


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("stream", [False, True])
async def test_safety_stop_is_finish_reason_content_filter(world: World, model: str, stream: bool) -> None:
    fake = world.fake(model)
    fake.safety_stop, fake.safety_stop_words = True, 2
    messages: Any = [{"role": "user", "content": "Tell me something"}]
    if stream:
        text, finish = "", None
        async for chunk in await world.client().chat.completions.create(model=model, messages=messages,
                                                                        stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
    else:
        completion = await world.client().chat.completions.create(model=model, messages=messages)
        text, finish = completion.choices[0].message.content or "", completion.choices[0].finish_reason
    assert finish == "content_filter" and text == " ".join(fake.reply.split(" ")[:2])


# --- reasoning ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_thoughts_are_reasoning_tokens_and_charged(world: World, model: str) -> None:
    fake = world.fake(model)
    fake.thoughts_tokens = 40
    raw = await world.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Think about it"}], reasoning_effort="low")
    completion = raw.parse()
    assert fake.requests[-1].body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    text = text_tokens(fake.reply)
    assert usage.completion_tokens == text + 40 and usage.completion_tokens_details.reasoning_tokens == 40
    rec = record(world)
    assert rec.output_tokens == text + 40 and rec.reasoning_tokens == 40
    # Exact: prompt at the input price, the answer's text at the output price, thoughts at the reasoning price.
    assert rec.cost_pico == (usage.prompt_tokens * PRICES.input + text * PRICES.output
                             + 40 * PRICES.reasoning_output)
    assert raw.headers["x-tollway-cost-usd-micros"] == str(round(rec.cost_pico / 1_000_000))


async def test_streamed_thoughts_are_counted_once(world: World) -> None:
    world.gemini.thoughts_tokens = 30
    usage = None
    async for chunk in await world.client().chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "Think"}], stream=True,
            stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == text_tokens(world.gemini.reply) + 30
    assert record(world).reasoning_tokens == 30
