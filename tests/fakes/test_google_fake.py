"""The Gemini API fake's generateContent and streamGenerateContent driven by the official google-genai SDK straight
at it (and raw requests for Google's exact SSE framing): if the SDK parses them, the gateway's adapters see Google's
wire formats. Text with usage, thoughts, stop reasons, function calls (and Gemini 3's thought signatures), JSON
output by schema; streams in chunks, as a JSON array without ``alt=sse``, and dying midway.

Every call goes through the SDK's async client: the fakes run on the test's event loop."""

from __future__ import annotations

import aiohttp
import orjson
import pydantic
import pytest
from google.genai import Client, errors, types

from tests.fakes.google_client import (
    KEY,
    MODEL,
    NO_AFC,
    TIME,
    WEATHER,
    gemini_url,
    hello,
    raw_post,
    sse_events,
)
from tests.fakes.google_upstream import (
    FakeGemini,
    call_tokens,
    prompt_tokens,
    schema_example,
    text_tokens,
)

pytestmark = [pytest.mark.usefixtures("no_google_environment"),
              pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")]


class City(pydantic.BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


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
