"""The Gemini API and Vertex AI fakes driven by the official google-genai SDK (and google-auth for the service
account's tokens) straight at them: if the SDK parses them, the gateway's adapters see Google's wire formats.

Every call goes through the SDK's async client: the fakes run on the test's event loop, and google-auth's token
refresh (blocking, on the requests transport) runs in a thread, as the SDK does it."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pydantic
import pytest
import urllib3
from google.auth import crypt, jwt
from google.auth.transport import requests as google_requests
from google.auth.transport import urllib3 as google_urllib3
from google.genai import Client, errors, types

from tests.fakes.google_upstream import (
    CLOUD_PLATFORM_SCOPE,
    GOOGLE_TOKEN_URI,
    INVALID_API_KEY,
    JWT_BEARER_GRANT,
    FakeGemini,
    FakeVertex,
    ServiceAccountKey,
    billable_characters,
    call_tokens,
    embedding_values,
    fake_gemini,
    fake_vertex,
    new_service_account_key,
    prompt_tokens,
    schema_example,
    text_tokens,
)

KEY = "AIza-fake-test-0123456789"
PROJECT = "tollway-test"
LOCATION = "europe-west4"
MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(name="get_weather", description="The weather in a city.", parameters=types.Schema(
    type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING),
                                        "days": types.Schema(type=types.Type.INTEGER, minimum=1)},
    required=["city"]))
TIME = types.FunctionDeclaration(name="get_time", description="The time in a city.", parameters_json_schema={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
GOOGLE_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
              "GOOGLE_CLOUD_LOCATION", "GOOGLE_CLOUD_QUOTA_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI",
              "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION", "GOOGLE_API_USE_CLIENT_CERTIFICATE",
              "GOOGLE_API_USE_MTLS_ENDPOINT", "GCE_METADATA_HOST", "GCE_METADATA_IP",
              "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED")


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


@pytest.fixture(autouse=True)
def _no_google_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No real Google credentials or settings from the environment: no keys, no ADC, no gcloud config."""
    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with fake_gemini(api_key=KEY) as server:
        yield server


def _gemini_client(fake: FakeGemini, key: str = KEY) -> Client:
    return Client(api_key=key, http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"))


@pytest.fixture
async def gclient(gemini: FakeGemini) -> AsyncIterator[Client]:
    client = _gemini_client(gemini)
    try:
        yield client
    finally:
        await client.aio.aclose()


@pytest.fixture
async def vertex() -> AsyncIterator[FakeVertex]:
    async with fake_vertex(project=PROJECT, location=LOCATION) as server:
        yield server


def _vertex_client(fake: FakeVertex, credentials: Any = None) -> Client:
    return Client(vertexai=True, project=PROJECT, location=LOCATION, credentials=credentials or fake.credentials(),
                  http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1"))


@pytest.fixture
async def vclient(vertex: FakeVertex) -> AsyncIterator[Client]:
    client = _vertex_client(vertex)
    try:
        yield client
    finally:
        await client.aio.aclose()


async def raw_post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


def gemini_url(fake: FakeGemini, method: str, model: str = MODEL) -> str:
    return f"{fake.base_url}/v1beta/models/{model}:{method}"


def vertex_url(fake: FakeVertex, method: str, model: str = MODEL, project: str = PROJECT) -> str:
    return f"{fake.base_url}/v1/projects/{project}/locations/{LOCATION}/publishers/google/models/{model}:{method}"


def hello() -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}


def sse_events(raw: bytes) -> Iterator[dict[str, Any]]:
    """Google's SSE framing, strictly: ``data: <json>`` events each ended by CRLF CRLF, nothing else."""
    assert raw.endswith(b"\r\n\r\n")
    for event in raw.split(b"\r\n\r\n")[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        yield orjson.loads(event[len(b"data: "):])


# --- Gemini: generateContent -------------------------------------------------------------------------------------

async def test_generate_text_with_usage(gemini: FakeGemini, gclient: Client) -> None:
    response = await gclient.aio.models.generate_content(
        model=MODEL, contents="Tell me something.", config=types.GenerateContentConfig(
            system_instruction="Be brief.", temperature=0.3, top_p=0.9, max_output_tokens=400,
            safety_settings=[types.SafetySetting(category=types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
                                                 threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH)]))
    assert response.text == gemini.reply
    candidate = response.candidates[0] if response.candidates else None
    assert candidate is not None and candidate.finish_reason == types.FinishReason.STOP and candidate.index == 0
    assert candidate.safety_ratings is None
    received = gemini.requests[-1]
    assert received.path == f"/v1beta/models/{MODEL}:generateContent"
    assert received.headers["x-goog-api-key"] == KEY
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == prompt_tokens(received.body) == text_tokens("Tell me something.") + 3
    assert usage.candidates_token_count == text_tokens(gemini.reply)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.thoughts_token_count is None and usage.cached_content_token_count is None
    assert usage.prompt_tokens_details and usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    assert response.model_version == MODEL and response.response_id


async def test_thoughts_are_billed_apart_from_candidates(gemini: FakeGemini, gclient: Client) -> None:
    gemini.thoughts_tokens, gemini.cached_tokens = 40, 2
    response = await gclient.aio.models.generate_content(model=MODEL, contents="Think first.",
                                                         config=types.GenerateContentConfig(
                                                             thinking_config=types.ThinkingConfig(include_thoughts=True)))
    usage = response.usage_metadata
    assert usage is not None and usage.thoughts_token_count == 40
    assert usage.candidates_token_count == text_tokens(gemini.reply)
    assert usage.total_token_count == (usage.prompt_token_count or 0) + usage.candidates_token_count + 40
    assert usage.cached_content_token_count == 2
    assert response.candidates and response.candidates[0].content and response.candidates[0].content.parts
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True and parts[1].text == gemini.reply and response.text == gemini.reply

    budgeted = await gclient.aio.models.generate_content(model=MODEL, contents="Think a little.",
                                                         config=types.GenerateContentConfig(
                                                             thinking_config=types.ThinkingConfig(thinking_budget=10)))
    assert budgeted.usage_metadata and budgeted.usage_metadata.thoughts_token_count == 10
    off = await gclient.aio.models.generate_content(model=MODEL, contents="Do not think.",
                                                    config=types.GenerateContentConfig(
                                                        thinking_config=types.ThinkingConfig(thinking_budget=0)))
    assert off.usage_metadata and off.usage_metadata.thoughts_token_count is None
    flash2 = await gclient.aio.models.generate_content(model="gemini-2.0-flash", contents="No thinking model.")
    assert flash2.usage_metadata and flash2.usage_metadata.thoughts_token_count is None


async def test_thoughts_can_use_up_max_output_tokens(gemini: FakeGemini, gclient: Client) -> None:
    gemini.thoughts_tokens = 100
    response = await gclient.aio.models.generate_content(
        model=MODEL, contents="Long thoughts.", config=types.GenerateContentConfig(max_output_tokens=30))
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert response.candidates[0].content is not None and response.candidates[0].content.parts is None
    assert response.text is None
    assert response.usage_metadata and response.usage_metadata.thoughts_token_count == 30
    assert response.usage_metadata.candidates_token_count is None

    gemini.thoughts_tokens = 0
    short = await gclient.aio.models.generate_content(
        model=MODEL, contents="Short answer.", config=types.GenerateContentConfig(max_output_tokens=4,
                                                                                  stop_sequences=["never"]))
    assert short.candidates and short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert short.text and gemini.reply.startswith(short.text) and text_tokens(short.text) <= 4
    stopped = await gclient.aio.models.generate_content(
        model=MODEL, contents="Stop.", config=types.GenerateContentConfig(stop_sequences=[" fake"], candidate_count=2))
    assert stopped.candidates and [c.index for c in stopped.candidates] == [0, 1]
    assert stopped.text == "Hello from the"


async def test_function_call_with_mode_any_then_text_after_the_response(gemini: FakeGemini, gclient: Client) -> None:
    tools = [types.Tool(function_declarations=[WEATHER, TIME])]
    config = types.GenerateContentConfig(tools=tools, automatic_function_calling=NO_AFC, tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY,
                                                            allowed_function_names=["get_time"])))
    response = await gclient.aio.models.generate_content(model=MODEL, contents="What time is it in Oslo?",
                                                         config=config)
    assert response.function_calls and len(response.function_calls) == 1
    call = response.function_calls[0]
    assert call.name == "get_time" and call.args == {"city": "fake"}
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.candidates[0].content and response.candidates[0].content.parts
    assert response.candidates[0].content.parts[0].thought_signature is None  # 2.5 signs only when it thinks

    history: list[types.Content] = [
        types.Content(role="user", parts=[types.Part(text="Please call get_weather for Oslo.")]),
        response.candidates[0].content,
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_time",
                                                                            response={"time": "12:00"})])]
    auto = types.GenerateContentConfig(tools=tools, automatic_function_calling=NO_AFC)
    answer = await gclient.aio.models.generate_content(model=MODEL, contents=history, config=auto)
    assert answer.function_calls is None and answer.text == gemini.reply

    gemini.tool_args = {"city": "Oslo", "days": 3}
    named = await gclient.aio.models.generate_content(
        model=MODEL, contents="Call get_weather and get_time for Oslo.", config=auto)
    assert named.function_calls and [c.name for c in named.function_calls] == ["get_weather", "get_time"]
    assert named.function_calls[0].args == {"city": "Oslo", "days": 3}
    usage = named.usage_metadata
    assert usage and usage.candidates_token_count == sum(call_tokens(c.name or "", c.args)
                                                         for c in named.function_calls)
    plain = await gclient.aio.models.generate_content(model=MODEL, contents="What is the weather?", config=auto)
    assert plain.function_calls is None and plain.text == gemini.reply
    none = types.GenerateContentConfig(tools=tools, automatic_function_calling=NO_AFC, tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)))
    assert (await gclient.aio.models.generate_content(model=MODEL, contents="Call it.", config=none)).text


async def test_gemini_3_signs_function_calls_and_wants_the_signature_back(gemini: FakeGemini, gclient: Client) -> None:
    model = "gemini-3-pro-preview"
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])],
                                         automatic_function_calling=NO_AFC)
    ask = types.Content(role="user", parts=[types.Part(text="Call get_weather for Oslo.")])
    first = await gclient.aio.models.generate_content(model=model, contents=[ask], config=config)
    assert first.candidates and first.candidates[0].content and first.candidates[0].content.parts
    turn = first.candidates[0].content
    assert turn.parts and turn.parts[0].function_call and turn.parts[0].thought_signature
    result = types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather",
                                                                                 response={"temp": 21})])
    ok = await gclient.aio.models.generate_content(model=model, contents=[ask, turn, result], config=config)
    assert ok.text == gemini.reply

    unsigned = types.Content(role="model", parts=[types.Part(function_call=turn.parts[0].function_call)])
    with pytest.raises(errors.ClientError) as missing:
        await gclient.aio.models.generate_content(model=model, contents=[ask, unsigned, result], config=config)
    assert missing.value.code == 400 and missing.value.status == "INVALID_ARGUMENT"
    assert missing.value.message and missing.value.message.startswith(
        "Function call is missing a thought_signature in functionCall parts.")
    assert "`default_api:get_weather` , position 2." in missing.value.message
    forged = types.Content(role="model", parts=[types.Part(function_call=turn.parts[0].function_call,
                                                           thought_signature=b"forged")])
    with pytest.raises(errors.ClientError, match=r"Corrupted thought signature\."):
        await gclient.aio.models.generate_content(model=model, contents=[ask, forged, result], config=config)


async def test_json_output_follows_the_response_schema(gemini: FakeGemini, gclient: Client) -> None:
    response = await gclient.aio.models.generate_content(
        model=MODEL, contents="A city, as JSON.", config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=City))
    assert isinstance(response.parsed, City)
    assert response.parsed == City(name="fake", population=1, coastal=True, districts=["fake"])
    schema = gemini.requests[-1].body["generationConfig"]["responseSchema"]
    assert orjson.loads(response.text or "") == schema_example(schema)
    assert list(orjson.loads(response.text or "")) == ["name", "population", "coastal", "districts"]

    json_schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "tags": {
        "type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2}}}
    raw = await gclient.aio.models.generate_content(model=MODEL, contents="JSON.", config=types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=json_schema))
    assert orjson.loads(raw.text or "") == {"ok": True, "tags": ["a", "a"]}
    gemini.json_reply = {"exact": [1, 2]}
    forced = await gclient.aio.models.generate_content(
        model=MODEL, contents="JSON.", config=types.GenerateContentConfig(response_mime_type="application/json"))
    assert orjson.loads(forced.text or "") == {"exact": [1, 2]}


# --- Gemini: streamGenerateContent -------------------------------------------------------------------------------

async def test_stream_text_in_chunks_with_cumulative_usage(gemini: FakeGemini, gclient: Client) -> None:
    gemini.thoughts_tokens = 12
    whole = await gclient.aio.models.generate_content(model=MODEL, contents="Stream it.")
    chunks = [c async for c in await gclient.aio.models.generate_content_stream(model=MODEL, contents="Stream it.")]
    assert gemini.requests[-1].path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert gemini.requests[-1].query == {"alt": "sse"}
    assert len(chunks) == 4 and "".join(c.text or "" for c in chunks) == gemini.reply
    finishes = [c.candidates[0].finish_reason if c.candidates else None for c in chunks]
    assert finishes == [None, None, None, types.FinishReason.STOP]
    counts = [(c.usage_metadata.candidates_token_count or 0) if c.usage_metadata else 0 for c in chunks]
    assert counts == sorted(counts) and chunks[-1].usage_metadata == whole.usage_metadata
    assert all(c.usage_metadata and c.usage_metadata.thoughts_token_count == 12 for c in chunks)
    assert len({c.response_id for c in chunks}) == 1

    async with aiohttp.ClientSession() as session, session.post(
            gemini_url(gemini, "streamGenerateContent") + "?alt=sse", json=hello(),
            headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        events = list(sse_events(await resp.read()))
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == gemini.reply
    assert "finishReason" in events[-1]["candidates"][0] and "finishReason" not in events[0]["candidates"][0]


async def test_stream_without_alt_sse_is_a_json_array(gemini: FakeGemini) -> None:
    status, chunks = await raw_post(gemini_url(gemini, "streamGenerateContent"), hello(), {"x-goog-api-key": KEY})
    assert status == 200 and isinstance(chunks, list) and len(chunks) == 4
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_stream_function_call_comes_in_one_chunk(gemini: FakeGemini, gclient: Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])],
                                         automatic_function_calling=NO_AFC)
    chunks = [c async for c in await gclient.aio.models.generate_content_stream(
        model=MODEL, contents="Call get_weather for Paris.", config=config)]
    assert len(chunks) == 1 and chunks[0].function_calls
    assert chunks[0].function_calls[0].name == "get_weather"
    assert chunks[0].candidates and chunks[0].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[0].usage_metadata and chunks[0].usage_metadata.candidates_token_count


async def test_stream_dies_after_chunks(gemini: FakeGemini) -> None:
    gemini.die_after_chunks = 2
    async with aiohttp.ClientSession() as session, session.post(
            gemini_url(gemini, "streamGenerateContent") + "?alt=sse", json=hello(),
            headers={"x-goog-api-key": KEY}) as resp:
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for data in resp.content.iter_any():
                received += data
    assert received.count(b"data: ") == 2


# --- Gemini: countTokens and embeddings --------------------------------------------------------------------------

async def test_count_tokens_matches_the_prompt_count(gemini: FakeGemini, gclient: Client) -> None:
    counted = await gclient.aio.models.count_tokens(model=MODEL, contents="How many tokens is this?")
    generated = await gclient.aio.models.generate_content(model=MODEL, contents="How many tokens is this?")
    assert counted.total_tokens == text_tokens("How many tokens is this?")
    assert generated.usage_metadata and counted.total_tokens == generated.usage_metadata.prompt_token_count

    gemini.cached_tokens = 1000
    inner = {**hello(), "model": f"models/{MODEL}", "cachedContent": "cachedContents/abc",
             "systemInstruction": {"parts": [{"text": "Be terse."}]}}
    status, body = await raw_post(gemini_url(gemini, "countTokens"), {"generateContentRequest": inner},
                                  {"x-goog-api-key": KEY})
    assert status == 200 and body["totalTokens"] == prompt_tokens(inner) + 1000
    assert body["cachedContentTokenCount"] == 1000
    status, body = await raw_post(gemini_url(gemini, "countTokens"), {**hello(), "generateContentRequest": inner},
                                  {"x-goog-api-key": KEY})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"


async def test_embeddings_batch_and_single(gemini: FakeGemini, gclient: Client) -> None:
    result = await gclient.aio.models.embed_content(
        model="gemini-embedding-001", contents=["first text", "second text"],
        config=types.EmbedContentConfig(output_dimensionality=8, task_type="RETRIEVAL_DOCUMENT"))
    assert gemini.requests[-1].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert result.embeddings and [e.values for e in result.embeddings] == [
        embedding_values("first text", 8, 3072, "RETRIEVAL_DOCUMENT"),
        embedding_values("second text", 8, 3072, "RETRIEVAL_DOCUMENT")]
    full = embedding_values("first text", 3072)
    assert abs(sum(v * v for v in full) - 1) < 1e-6 and embedding_values("first text", 8) == full[:8]

    status, body = await raw_post(gemini_url(gemini, "embedContent", "text-embedding-004"),
                                  {"content": {"parts": [{"text": "one"}]}}, {"x-goog-api-key": KEY})
    assert status == 200 and body == {"embedding": {"values": embedding_values("one", 768, 768)}}
    status, body = await raw_post(gemini_url(gemini, "batchEmbedContents", "text-embedding-004"), {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}]}, {"x-goog-api-key": KEY})
    assert status == 400 and "requests[0].model" in body["error"]["message"]
    status, body = await raw_post(gemini_url(gemini, "embedContent", "text-embedding-004"), {
        "content": {"parts": [{"text": "x"}]}, "outputDimensionality": 4096}, {"x-goog-api-key": KEY})
    assert status == 400 and "output_dimensionality" in body["error"]["message"]


# --- Gemini: blocked prompts, safety, errors ---------------------------------------------------------------------

async def test_blocked_prompt_has_feedback_and_no_candidates(gemini: FakeGemini, gclient: Client) -> None:
    gemini.block_prompt = True
    response = await gclient.aio.models.generate_content(model=MODEL, contents="Something forbidden.")
    assert response.candidates is None and response.text is None
    assert response.prompt_feedback and response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    ratings = response.prompt_feedback.safety_ratings or []
    assert [r.category for r in ratings if r.blocked] == [types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT]
    usage = response.usage_metadata
    assert usage and usage.prompt_token_count == usage.total_token_count and usage.candidates_token_count is None
    chunks = [c async for c in await gclient.aio.models.generate_content_stream(model=MODEL, contents="Forbidden.")]
    assert len(chunks) == 1 and chunks[0].prompt_feedback and chunks[0].candidates is None
    gemini.block_prompt = "PROHIBITED_CONTENT"
    response = await gclient.aio.models.generate_content(model=MODEL, contents="Forbidden.")
    assert response.prompt_feedback and response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


async def test_safety_stop_with_and_without_partial_content(gemini: FakeGemini, gclient: Client) -> None:
    gemini.safety_stop = True
    response = await gclient.aio.models.generate_content(model=MODEL, contents="Risky.")
    candidate = response.candidates[0] if response.candidates else None
    assert candidate and candidate.finish_reason == types.FinishReason.SAFETY and candidate.content is None
    assert candidate.safety_ratings and any(r.blocked for r in candidate.safety_ratings)
    assert response.usage_metadata and response.usage_metadata.candidates_token_count is None
    gemini.safety_stop_words = 3
    chunks = [c async for c in await gclient.aio.models.generate_content_stream(model=MODEL, contents="Risky.")]
    assert "".join(c.text or "" for c in chunks) == "Hello from the"
    last = chunks[-1].candidates[0] if chunks[-1].candidates else None
    assert last and last.finish_reason == types.FinishReason.SAFETY and last.safety_ratings
    gemini.safety_stop, gemini.finish_reason = False, "RECITATION"
    recited = await gclient.aio.models.generate_content(model=MODEL, contents="Quote.")
    assert recited.candidates and recited.candidates[0].finish_reason == types.FinishReason.RECITATION


async def test_wrong_or_missing_api_key(gemini: FakeGemini) -> None:
    client = _gemini_client(gemini, key="AIza-wrong")
    try:
        with pytest.raises(errors.ClientError) as refused:
            await client.aio.models.generate_content(model=MODEL, contents="Hi")
    finally:
        await client.aio.aclose()
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert refused.value.message == INVALID_API_KEY == "API key not valid. Please pass a valid API key."
    assert refused.value.details["error"]["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"}}
    status, body = await raw_post(gemini_url(gemini, "generateContent") + f"?key={KEY}", hello())
    assert status == 200 and body["candidates"][0]["content"]["parts"][0]["text"] == gemini.reply
    status, body = await raw_post(gemini_url(gemini, "generateContent"), hello())
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"


async def test_unknown_fields_bad_values_and_snake_case(gemini: FakeGemini) -> None:
    headers = {"x-goog-api-key": KEY}
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        **hello(), "generationConfig": {"maxTokens": 5, "temperature": "hot"}, "labels": {"a": "b"}}, headers)
    assert status == 400
    assert body["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"maxTokens\" at 'generation_config': Cannot find field.\n"
        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"\n"
        "Invalid JSON payload received. Unknown name \"labels\": Cannot find field.")
    violations = body["error"]["details"][0]["fieldViolations"]
    assert violations[0]["field"] == "generation_config" and "field" not in violations[2]
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "tool_config": {"function_calling_config": {
            "mode": "SOMETIMES"}}}, headers)
    assert status == 400 and body["error"]["message"] == (
        "Invalid value at 'tool_config.function_calling_config.mode' "
        "(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"SOMETIMES\"")
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {  # one value for a repeated field is fine
        "contents": {"parts": {"text": "Hi"}}}, headers)
    assert status == 200
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        "contents": [{"role": "user", "parts": [{"text": ["Hi"]}]}]}, headers)
    assert status == 400 and body["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"text\" at 'contents[0].parts[0]': Proto field is not "
        "repeating, cannot start list.")
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generation_config": {
            "max_output_tokens": 500, "thinking_config": {"thinking_budget": 0}}}, headers)
    assert status == 200 and body["candidates"][0]["finishReason"] == "STOP"
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        "contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]}, headers)
    assert status == 400 and body["error"]["message"] == "Please use a valid role: user, model."
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {"contents": []}, headers)
    assert (status, body["error"]["message"]) == (400, "* GenerateContentRequest.contents: contents is not specified\n")
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        "contents": [{"role": "user", "parts": [{"text": ""}]}]}, headers)
    assert status == 400 and body["error"]["message"] == (
        "* GenerateContentRequest.contents[0].parts[0].data: required oneof field 'data' must have one initialized "
        "field\n")
    status, body = await raw_post(gemini_url(gemini, "generateContent", "gemini-2.5-pro"), {
        **hello(), "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, headers)
    assert status == 400 and body["error"]["message"] == "Budget 0 is invalid. This model only works in thinking mode."
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {
        **hello(), "generationConfig": {"responseMimeType": "text/html"}}, headers)
    assert status == 400 and "allowed mimetypes are" in body["error"]["message"]


async def test_function_turn_rules(gemini: FakeGemini) -> None:
    headers = {"x-goog-api-key": KEY}
    call = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}},
                                       {"functionCall": {"name": "g", "args": {}}}]}
    answer = {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": True}}}]}
    for contents, message in [
            ([call], "Please ensure that function call turn comes immediately after a user turn or after a function "
                     "response turn."),
            ([hello()["contents"][0], answer], "Please ensure that function response turn comes immediately after a "
                                               "function call turn."),
            ([hello()["contents"][0], call, answer], "Please ensure that the number of function response parts is "
                                                     "equal to the number of function call parts of the function call "
                                                     "turn.")]:
        status, body = await raw_post(gemini_url(gemini, "generateContent"), {"contents": contents}, headers)
        assert (status, body["error"]["message"]) == (400, message)
    status, body = await raw_post(gemini_url(gemini, "generateContent"), {**hello(), "tools": [
        {"functionDeclarations": [{"name": "bad name!", "parameters": {"type": "OBJECT", "properties": {}}}]}]},
                                  headers)
    assert status == 400 and body["error"]["message"].startswith(
        "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name.")
    assert "parameters.properties: should be non-empty for OBJECT type\n" in body["error"]["message"]


async def test_unknown_model_and_failure_knobs(gemini: FakeGemini, gclient: Client) -> None:
    with pytest.raises(errors.ClientError) as missing:
        await gclient.aio.models.generate_content(model="gemini-1.0-pro", contents="Hi")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    assert missing.value.message == ("models/gemini-1.0-pro is not found for API version v1beta, or is not supported "
                                     "for generateContent. Call ListModels to see the list of available models and "
                                     "their supported methods.")
    gemini.fail_status, gemini.fail_times = 429, 1
    with pytest.raises(errors.ClientError) as limited:
        await gclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    retry = [d for d in limited.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]
    gemini.fail_status, gemini.fail_times = 503, 1
    with pytest.raises(errors.ServerError) as overloaded:
        await gclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert overloaded.value.code == 503 and overloaded.value.status == "UNAVAILABLE"
    gemini.fail_status, gemini.fail_times = 500, 1
    with pytest.raises(errors.ServerError) as internal:
        await gclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert internal.value.status == "INTERNAL"
    assert (await gclient.aio.models.generate_content(model=MODEL, contents="Hi")).text == gemini.reply
    gemini.drop_connection = True
    with pytest.raises(aiohttp.ClientError):
        await raw_post(gemini_url(gemini, "generateContent"), hello(), {"x-goog-api-key": KEY})
    gemini.drop_connection, gemini.delay_s = False, 0.2
    started = time.monotonic()
    status, _ = await raw_post(gemini_url(gemini, "generateContent"), hello(), {"x-goog-api-key": KEY})
    assert status == 200 and time.monotonic() - started >= 0.2


# --- Vertex: service-account tokens ------------------------------------------------------------------------------

async def test_vertex_generate_with_a_service_account_token(vertex: FakeVertex, vclient: Client) -> None:
    response = await vclient.aio.models.generate_content(model=MODEL, contents="Hello Vertex.")
    assert response.text == vertex.reply and response.create_time is not None
    received = vertex.requests[-1]
    assert received.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}" \
                            ":generateContent"
    assert len(vertex.token_requests) == 1
    grant = vertex.token_requests[0].body
    assert grant["grant_type"] == JWT_BEARER_GRANT
    claims = jwt.decode(grant["assertion"], certs=vertex.service_account.public_key_pem if vertex.service_account
                        else "", audience=GOOGLE_TOKEN_URI)  # type: ignore[no-untyped-call]
    assert claims["scope"] == CLOUD_PLATFORM_SCOPE and claims["iss"].endswith(f"@{PROJECT}.iam.gserviceaccount.com")
    token = received.headers["Authorization"].removeprefix("Bearer ")
    assert token in vertex.tokens and token.startswith("ya29.")
    usage = response.usage_metadata
    assert usage and usage.traffic_type == types.TrafficType.ON_DEMAND
    assert usage.candidates_tokens_details and usage.candidates_tokens_details[0].token_count == text_tokens(
        vertex.reply)
    assert usage.prompt_token_count == prompt_tokens(received.body)
    assert response.candidates and response.candidates[0].avg_logprobs is not None


async def test_token_lifetime_refresh_and_expiry(vertex: FakeVertex) -> None:
    vertex.token_lifetime_s = 1  # below google-auth's refresh threshold: every call refreshes
    credentials = vertex.credentials()
    client = _vertex_client(vertex, credentials)
    try:
        for _ in range(2):
            assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text == vertex.reply
        assert len(vertex.token_requests) == 2
        used = [r.headers["Authorization"] for r in vertex.requests]
        assert len(set(used)) == 2
        await asyncio.sleep(1.05)
        status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"Authorization": used[-1]})
        assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
        assert body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"

        vertex.token_lifetime_s = 3599  # the credentials keep this one; the server expires it
        assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text
        grants = len(vertex.token_requests)
        vertex.expire_tokens()
        with pytest.raises(errors.ClientError) as expired:
            await client.aio.models.generate_content(model=MODEL, contents="Hi")
        assert expired.value.code == 401 and expired.value.status == "UNAUTHENTICATED"
        assert expired.value.details["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
        await asyncio.to_thread(credentials.refresh, google_requests.Request())
        assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text
        assert len(vertex.token_requests) == grants + 1
    finally:
        await client.aio.aclose()


async def test_missing_unknown_and_misplaced_credentials(vertex: FakeVertex) -> None:
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello())
    assert status == 401 and body["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert body["error"]["message"].startswith("Request is missing required authentication credential.")
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"Authorization": "Bearer ya29.no"})
    assert status == 401 and body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert body["error"]["details"][0]["metadata"]["method"] == (
        "google.cloud.aiplatform.v1.PredictionService.GenerateContent")
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"x-goog-api-key": KEY})
    assert status == 401 and body["error"]["message"].startswith("API keys are not supported by this API.")

    narrow = vertex.credentials(scopes=("https://www.googleapis.com/auth/devstorage.read_only",))
    await asyncio.to_thread(narrow.refresh, google_requests.Request())
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(),
                                  {"Authorization": f"Bearer {narrow.token}"})
    assert status == 403 and body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    credentials = vertex.credentials()
    await asyncio.to_thread(credentials.refresh, google_requests.Request())
    status, body = await raw_post(vertex_url(vertex, "generateContent", project="someone-else"), hello(),
                                  {"Authorization": f"Bearer {credentials.token}"})
    assert status == 403 and body["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


async def test_token_endpoint_checks_the_jwt(vertex: FakeVertex) -> None:
    key = vertex.service_account
    assert key is not None
    now = int(time.time())
    claims = {"iss": key.client_email, "aud": GOOGLE_TOKEN_URI, "iat": now, "exp": now + 3600,
              "scope": CLOUD_PLATFORM_SCOPE}

    def signed(payload: dict[str, Any], by: ServiceAccountKey = key, key_id: str = key.private_key_id) -> str:
        signer = crypt.RSASigner.from_string(by.private_key_pem, key_id)  # type: ignore[no-untyped-call]
        return str(jwt.encode(signer, payload).decode())  # type: ignore[no-untyped-call]

    async def grant(assertion: str, grant_type: str = JWT_BEARER_GRANT) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(vertex.token_uri, data={
                "grant_type": grant_type, "assertion": assertion}) as resp:
            return resp.status, await resp.json(content_type=None)

    status, body = await grant(signed(claims))
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"] in vertex.tokens
    other = new_service_account_key(PROJECT, "intruder")
    assert await grant(signed(claims, other)) == (400, {
        "error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    status, body = await grant(signed({**claims, "iss": other.client_email}, other, other.private_key_id))
    assert (status, body["error_description"]) == (400, "Invalid grant: account not found")
    vertex.trust(other)
    status, body = await grant(signed({**claims, "iss": other.client_email}, other, other.private_key_id))
    assert status == 200
    status, body = await grant(signed({**claims, "aud": "https://example.com/token"}))
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await grant(signed({**claims, "iat": now - 7200, "exp": now - 3600}))
    assert status == 400 and body["error_description"].startswith("Invalid JWT: Token must be a short-lived token")
    status, body = await grant(signed({k: v for k, v in claims.items() if k != "scope"}))
    assert (status, body["error"]) == (400, "invalid_scope")
    status, body = await grant(signed(claims), grant_type="client_credentials")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await grant(base64.b64encode(b"not a jwt").decode())
    assert (status, body["error"]) == (400, "invalid_request")


async def test_google_auth_transports_that_work_here(vertex: FakeVertex) -> None:
    by_requests = vertex.credentials()
    await asyncio.to_thread(by_requests.refresh, google_requests.Request())
    by_urllib3 = vertex.credentials()
    await asyncio.to_thread(by_urllib3.refresh,
                            google_urllib3.Request(urllib3.PoolManager()))  # type: ignore[no-untyped-call]
    assert by_requests.token in vertex.tokens and by_urllib3.token in vertex.tokens
    assert by_requests.expiry is not None and not by_requests.expired


# --- Vertex: the generative endpoints ----------------------------------------------------------------------------

async def test_vertex_stream_has_usage_on_the_last_chunk_only(vertex: FakeVertex, vclient: Client) -> None:
    vertex.thoughts_tokens = 5
    chunks = [c async for c in await vclient.aio.models.generate_content_stream(model=MODEL, contents="Stream.")]
    assert "".join(c.text or "" for c in chunks) == vertex.reply
    assert [c.usage_metadata is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    usage = chunks[-1].usage_metadata
    assert usage and usage.thoughts_token_count == 5 and usage.candidates_token_count == text_tokens(vertex.reply)
    assert vertex.requests[-1].path.endswith(f"/models/{MODEL}:streamGenerateContent")
    assert all(c.create_time is not None for c in chunks)


async def test_vertex_count_tokens_and_billable_characters(vertex: FakeVertex, vclient: Client) -> None:
    counted = await vclient.aio.models.count_tokens(model=MODEL, contents="Count these words, please.",
                                                    config=types.CountTokensConfig(system_instruction="Be brief."))
    body = vertex.requests[-1].body
    assert counted.total_tokens == prompt_tokens(body)
    credentials = vertex.credentials()
    await asyncio.to_thread(credentials.refresh, google_requests.Request())
    status, raw = await raw_post(vertex_url(vertex, "countTokens"), body,
                                 {"Authorization": f"Bearer {credentials.token}"})
    assert status == 200 and raw["totalBillableCharacters"] == billable_characters(body) == len(
        "Countthesewords,please.Bebrief.")


async def test_vertex_text_embeddings_through_predict(vertex: FakeVertex, vclient: Client) -> None:
    result = await vclient.aio.models.embed_content(
        model="text-embedding-005", contents=["alpha beta", "gamma"],
        config=types.EmbedContentConfig(output_dimensionality=16, task_type="RETRIEVAL_QUERY"))
    received = vertex.requests[-1]
    assert received.path.endswith("/models/text-embedding-005:predict")
    assert received.body == {"instances": [{"content": "alpha beta", "task_type": "RETRIEVAL_QUERY"},
                                           {"content": "gamma", "task_type": "RETRIEVAL_QUERY"}],
                             "parameters": {"outputDimensionality": 16}}
    assert result.embeddings and result.embeddings[0].values == embedding_values("alpha beta", 16, 768,
                                                                                 "RETRIEVAL_QUERY")
    assert result.embeddings[0].statistics and result.embeddings[0].statistics.token_count == text_tokens("alpha beta")
    assert result.metadata and result.metadata.billable_character_count == len("alphabetagamma")
    with pytest.raises(errors.ClientError) as refused:
        await vclient.aio.models.embed_content(model="text-embedding-005", contents="x",
                                               config=types.EmbedContentConfig(output_dimensionality=1024))
    assert refused.value.code == 400
    gemini_embedding = await vclient.aio.models.embed_content(model="gemini-embedding-001", contents="one",
                                                              config=types.EmbedContentConfig(output_dimensionality=4))
    assert vertex.requests[-1].path.endswith("/models/gemini-embedding-001:embedContent")
    assert gemini_embedding.embeddings and gemini_embedding.embeddings[0].values == embedding_values("one", 4)


async def test_vertex_errors(vertex: FakeVertex, vclient: Client) -> None:
    with pytest.raises(errors.ClientError) as missing:
        await vclient.aio.models.generate_content(model="gemini-0.9-ultra", contents="Hi")
    assert missing.value.code == 404 and missing.value.message == (
        f"Publisher Model `projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-0.9-ultra` was not "
        "found or your project does not have access to it. Please ensure you are using a valid model version. For "
        "more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")
    with pytest.raises(errors.ClientError) as unknown:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi", config=types.GenerateContentConfig(
            http_options=types.HttpOptions(extra_body={"generationConfig": {"bogus": 1}})))
    assert unknown.value.message == (
        "Invalid JSON payload received. Unknown name \"bogus\" at 'generation_config': Cannot find field.")
    with pytest.raises(errors.ClientError) as hot:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi", config=types.GenerateContentConfig(
            temperature=3))
    assert hot.value.message == ("Unable to submit request because it has a temperature value of 3.0 but the supported "
                                 "range is from 0 (inclusive) to 2.0001 (exclusive). Update the value and try again.")
    vertex.fail_status, vertex.fail_times = 429, 1
    with pytest.raises(errors.ClientError) as limited:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert limited.value.status == "RESOURCE_EXHAUSTED" and limited.value.message and limited.value.message.startswith(
        "Resource exhausted. Please try again later.")
    vertex.block_prompt = True
    blocked = await vclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert blocked.prompt_feedback and blocked.prompt_feedback.block_reason_message and blocked.candidates is None
