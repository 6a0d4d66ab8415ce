"""The Gemini API and Vertex AI fakes' token counting and embeddings driven by the official google-genai SDK (and raw
requests): countTokens (with cached content, and Vertex's billable characters), Gemini's embedContent and
batchEmbedContents, and Vertex's text embeddings through predict.

Every call goes through the SDK's async client: the fakes run on the test's event loop, and google-auth's token
refresh (blocking, on the requests transport) runs in a thread, as the SDK does it."""

from __future__ import annotations

import asyncio

import pytest
from google.auth.transport import requests as google_requests
from google.genai import Client, errors, types

from tests.fakes.google_client import (
    KEY,
    MODEL,
    gemini_url,
    hello,
    raw_post,
    vertex_url,
)
from tests.fakes.google_upstream import (
    FakeGemini,
    FakeVertex,
    billable_characters,
    embedding_values,
    prompt_tokens,
    text_tokens,
)

pytestmark = [pytest.mark.usefixtures("no_google_environment"),
              pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")]


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


# --- Vertex: countTokens and embeddings --------------------------------------------------------------------------

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
