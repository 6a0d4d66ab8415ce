"""The official openai and anthropic SDKs through a real data plane to the fake Gemini API and Vertex AI, on the
surfaces other than chat: embeddings (batched, base64, reduced dimensions) and exact token counting.

How the providers authenticate, and the check at teardown that no credential reached a log record: the
``google_world`` fixture (``conftest.py``), as ``test_google_chat_e2e.py`` describes.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest

from tests.adapters.google_world import CHAT_MODELS, LOCATION, PROJECT, World, path_of, record
from tests.fakes.google_upstream import embedding_values, prompt_tokens, text_tokens


@pytest.fixture
def world(google_world: World) -> World:
    """``google_world`` (conftest.py): the data plane in front of the fake Gemini API and Vertex AI."""
    return google_world


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
