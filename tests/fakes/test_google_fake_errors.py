"""The Gemini API fake's refusals driven by the official google-genai SDK and raw requests: blocked prompts and
safety stops, wrong or missing API keys, Google's validation errors (unknown fields, bad values, roles, empty
contents, function turn rules and declarations), unknown models and the failure knobs.

Every call goes through the SDK's async client: the fakes run on the test's event loop."""

from __future__ import annotations

import time

import aiohttp
import pytest
from google.genai import Client, errors, types

from tests.fakes.google_client import (
    KEY,
    MODEL,
    gemini_client,
    gemini_url,
    hello,
    raw_post,
)
from tests.fakes.google_upstream import (
    INVALID_API_KEY,
    FakeGemini,
)

pytestmark = [pytest.mark.usefixtures("no_google_environment"),
              pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")]


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
    client = gemini_client(gemini, key="AIza-wrong")
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
