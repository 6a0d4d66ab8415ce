"""The official openai and anthropic SDKs through a real data plane to the fake Gemini API and Vertex AI on loopback.

The Gemini providers authenticate with API keys from environment variables, the Vertex one with a throwaway
service account whose key file the fake wrote (its ``token_uri`` is the fake's own OAuth endpoint): google-auth
signs the JWT and fetches the access tokens, as it would against Google. No real Google credentials or settings
from the environment reach the data plane. Every test also checks, at teardown, that neither an API key, an access
token nor the service account's private key appears in any log record (captured at DEBUG, google-auth's included);
the error bodies a client sees are checked where failures are provoked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from dataclasses import replace
from typing import Any

import anthropic
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionToolParam

from dataplane.snapshot.runtime import Provider
from dataplane.upstream.adapters.google_auth import REFRESH_BEFORE_S, AccessTokens
from tests.adapters.google_world import API_KEY, FLASH, LOCATION, PRICES, PROJECT, WRONG_KEY, World
from tests.fakes.google_upstream import embedding_values, prompt_tokens, text_tokens
from tollway.pb import usage_pb2 as upb

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TOOLS: list[ChatCompletionToolParam] = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"], "additionalProperties": False}}}]
CHAT_MODELS = ["flash", "vflash"]  # the Gemini API's deployment, Vertex's


class City(pydantic.BaseModel):
    name: str
    population: int
    districts: list[str]


@pytest.fixture
def world(google_world: World) -> World:
    """``google_world`` (conftest.py): the data plane in front of the fake Gemini API and Vertex AI."""
    return google_world


def assert_no_secret(world: World, *texts: Any) -> None:
    for text in texts:
        shown = str(text)
        for secret in world.secrets():
            assert secret not in shown, "a credential reached a client"


def path_of(model: str, method: str) -> str:
    if model.startswith("v"):
        return f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{FLASH}:{method}"
    return f"/v1beta/models/{FLASH}:{method}"


def record(world: World) -> upb.UsageRecord:
    return world.spool.records[-1]


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


# --- embeddings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["g-embed", "v-embed"])
async def test_embeddings(world: World, model: str) -> None:
    texts = ["first text", "a second, longer text"]
    answer = await world.client().embeddings.create(model=model, input=texts)
    upstream, full = ("gemini-embedding-001", 3072) if model == "g-embed" else ("text-embedding-005", 768)
    assert [d.index for d in answer.data] == [0, 1]
    for item, text in zip(answer.data, texts, strict=True):  # the SDK asks for base64: float32 precision
        assert item.embedding == pytest.approx(embedding_values(text, 768, full), abs=1e-6)
    received = world.fake(model).requests[-1]
    if model == "g-embed":
        assert received.path == f"/v1beta/models/{upstream}:batchEmbedContents"
        assert received.body["requests"][0] == {"model": f"models/{upstream}", "outputDimensionality": 768,
                                                "content": {"parts": [{"text": "first text"}]}}
        # The Gemini API counts no tokens here: the gateway's estimate, about four characters a token.
        assert answer.usage.prompt_tokens == sum(-(-len(t) // 4) for t in texts)
    else:
        assert received.path == (f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
                                 f"{upstream}:predict")
        assert received.body == {"instances": [{"content": t} for t in texts],
                                 "parameters": {"outputDimensionality": 768}}
        assert answer.usage.prompt_tokens == sum(text_tokens(t) for t in texts)  # Vertex's statistics
    assert record(world).input_tokens == answer.usage.prompt_tokens


@pytest.mark.parametrize("model", ["g-embed", "v-embed"])
async def test_embeddings_base64_and_dimensions(world: World, model: str) -> None:
    raw = await world.client().embeddings.with_raw_response.create(model=model, input="hello", dimensions=256,
                                                                   encoding_format="base64")
    encoded = json.loads(raw.http_response.text)["data"][0]["embedding"]
    values = struct.unpack("<256f", base64.b64decode(encoded))
    full = 3072 if model == "g-embed" else 768
    assert list(values) == pytest.approx(embedding_values("hello", 256, full), abs=1e-6)


async def test_many_embeddings_are_batched(world: World) -> None:
    texts = [f"text number {i}" for i in range(230)]
    answer = await world.client().embeddings.create(model="g-embed", input=texts, dimensions=8)
    assert len(answer.data) == 230 and [d.index for d in answer.data] == list(range(230))
    assert answer.data[229].embedding == pytest.approx(embedding_values(texts[229], 8), abs=1e-6)
    assert sorted(len(r.body["requests"]) for r in world.gemini.requests) == [30, 100, 100]


# --- token counting -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_count_tokens_is_exact(world: World, model: str) -> None:
    raw = await world.anthropic().messages.with_raw_response.count_tokens(
        model=model, system="Be brief.", messages=[{"role": "user", "content": "How many tokens is this?"}],
        tools=[{"name": "get_weather", "description": "The weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    counted = await raw.parse()
    assert raw.headers["x-tollway-token-count"] == "exact"
    received = world.fake(model).requests[-1]
    assert received.path == path_of(model, "countTokens")
    inner = received.body["generateContentRequest"] if model == "flash" else received.body
    assert inner["systemInstruction"] == {"parts": [{"text": "Be brief."}]} and inner["tools"]
    assert counted.input_tokens == prompt_tokens(inner) > 0
    assert record(world).cost_pico == 0, "counting tokens is free"


# --- Vertex access tokens ------------------------------------------------------------------------------------------

async def test_vertex_token_is_fetched_once_and_reused(world: World) -> None:
    for _ in range(3):
        await world.client().chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert len(world.vertex.token_requests) == 1
    assert len({r.headers["Authorization"] for r in world.vertex.requests}) == 1


async def test_vertex_token_expired_while_idle_is_refetched(world: World) -> None:
    world.vertex.token_lifetime_s = 1
    client = world.client()
    await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    await asyncio.sleep(1.2)  # past the token's lifetime
    second = await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert second.choices[0].message.content == world.vertex.reply
    assert len(world.vertex.token_requests) == 2
    first_token, second_token = (r.headers["Authorization"] for r in world.vertex.requests)
    assert first_token != second_token


async def test_vertex_token_refused_by_google_is_replaced_once(world: World) -> None:
    client = world.client()
    await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    world.vertex.expire_tokens()  # the cache still thinks its token is good
    second = await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert second.choices[0].message.content == world.vertex.reply
    assert len(world.vertex.token_requests) == 2


async def test_vertex_token_is_refreshed_ahead_of_expiry_in_the_background(world: World) -> None:
    assert world.vertex.credentials_file is not None
    now = [1000.0]
    tokens = AccessTokens(clock=lambda: now[0])
    provider = Provider(name="vertex", type="vertex", base_url=world.vertex.base_url, region="eu",
                        connect_timeout_s=1, read_timeout_s=1, api_version="", mock_delay_ms=0,
                        mock_tokens_per_second=0, credential=str(world.vertex.credentials_file),
                        credential_env="TEST_VERTEX_SA", gcp_project=PROJECT, gcp_location=LOCATION)
    try:
        first = await tokens.get(provider)
        assert len(world.vertex.token_requests) == 1
        now[0] += world.vertex.token_lifetime_s - REFRESH_BEFORE_S + 1  # inside the refresh window, still valid
        assert await tokens.get(provider) == first, "a request never waits while a valid token exists"
        for _ in range(200):  # the refresh runs in a thread, started by that request
            if len(world.vertex.token_requests) == 2 and await tokens.get(provider) != first:
                break
            await asyncio.sleep(0.01)
        assert len(world.vertex.token_requests) == 2
        assert await tokens.get(provider) != first
        assert len(world.vertex.token_requests) == 2, "one refresh per window"
    finally:
        await tokens.aclose()


async def test_vertex_variable_not_set_names_it(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="vflash-unset", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and "TEST_VERTEX_SA_UNSET" in str(failed.value.body)


async def test_vertex_untrusted_service_account_is_an_auth_failure(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="vflash-untrusted",
                                                     messages=[{"role": "user", "content": "x"}])
    body = str(failed.value.body)
    assert failed.value.status_code == 502
    assert "TEST_VERTEX_SA_UNTRUSTED" in body and "access token" in body
    assert_no_secret(world, body)
    assert not world.vertex.requests, "no request without a token"


# --- failures -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_upstream_429_is_the_clients_429_with_retry_after(world: World, model: str) -> None:
    fake = world.fake(model)
    fake.fail_status, fake.fail_times = 429, 5
    with pytest.raises(openai.RateLimitError) as limited:
        await world.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    if model == "flash":  # the Gemini API says how long in RetryInfo; Vertex does not
        assert limited.value.response.headers["retry-after"] == str(fake.retry_delay_s)
    assert_no_secret(world, limited.value.body)


async def test_upstream_429_fails_over_to_the_next_candidate(world: World) -> None:
    world.gemini.fail_status, world.gemini.fail_times = 429, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}])
    assert raw.parse().choices[0].message.content == world.vertex.reply
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:429"


@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_fails_over(world: World, status: int) -> None:
    world.gemini.fail_status, world.gemini.fail_times = status, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}], stream=True)
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:5xx"


async def test_wrong_api_key_is_a_502_naming_no_secret(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="flash-wrong-key",
                                                     messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    body = str(failed.value.body)
    assert "gemini-wrong-key" in body and "credential was refused" in body
    assert_no_secret(world, body, failed.value.response.headers)
    assert world.gemini.requests[-1].headers["x-goog-api-key"] == WRONG_KEY  # Google's 400 API_KEY_INVALID


async def test_stream_cut_mid_way_ends_with_an_error(world: World) -> None:
    world.gemini.die_after_chunks = 2
    text = ""
    with pytest.raises(openai.APIError):
        async for chunk in await world.client().chat.completions.create(
                model="flash", messages=[{"role": "user", "content": "Hello"}], stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text and world.gemini.reply.startswith(text) and text != world.gemini.reply
    assert record(world).usage_source in ("upstream", "estimated-aborted")


async def test_unknown_model_fails_over(world: World) -> None:
    world.gemini.models = frozenset()
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:unsupported"


def test_provider_repr_hides_the_credential() -> None:
    provider = Provider(name="g", type="gemini", base_url="http://x", region="eu", connect_timeout_s=1,
                        read_timeout_s=1, api_version="", mock_delay_ms=0, mock_tokens_per_second=0,
                        credential=API_KEY)
    assert API_KEY not in repr(provider) and API_KEY not in repr(replace(provider, name="h"))
