"""The hub <-> Gemini embeddings and token-counting translations are pure: table-driven, no event loop, no sockets.

Embeddings bodies are batched for the Gemini API (batchEmbedContents) and Vertex AI (predict) and checked by the
Google fake's own proto-JSON parsing and request checks; the vectors they answer with become OpenAI embeddings (floats
or base64). countTokens bodies for both APIs are checked the same way (``assert_accepted``), and their answers become
input token counts.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.gemini_embeddings import (
    count_tokens_body,
    estimated_embedding_tokens,
    gemini_embedding_bodies,
    gemini_embedding_vectors,
    input_tokens,
    openai_embeddings,
    vertex_embedding_bodies,
    vertex_embedding_vectors,
)
from dataplane.translate.hub_to_gemini import GEMINI_EMBED_BATCH, VERTEX_EMBED_BATCH
from tests.fakes.google_upstream import FakeGemini, FakeVertex
from tests.translate.gemini_cases import FLASH, USER, WEATHER, assert_accepted

pytestmark = pytest.mark.pure

# --- embeddings ---------------------------------------------------------------------------------------------------

def test_gemini_embedding_bodies_are_batched() -> None:
    texts = [f"t{i}" for i in range(GEMINI_EMBED_BATCH + 5)]
    bodies = gemini_embedding_bodies({"input": texts, "dimensions": 64}, "gemini-embedding-001", 768)
    assert isinstance(bodies, list) and [len(b["requests"]) for b in bodies] == [GEMINI_EMBED_BATCH, 5]
    assert bodies[1]["requests"][0] == {"model": "models/gemini-embedding-001", "outputDimensionality": 64,
                                        "content": {"parts": [{"text": f"t{GEMINI_EMBED_BATCH}"}]}}
    fake = FakeGemini()
    for body in bodies:
        parsed, refused = fake._parse(body, True, "BatchEmbedContentsRequest", "v1beta")
        assert refused is None and fake._check_embed(parsed, "gemini-embedding-001", "batchEmbedContents") is None
    single = gemini_embedding_bodies({"input": "one"}, "text-embedding-004", 0)
    assert single == [{"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]}}]}]


@pytest.mark.parametrize(("model", "sizes"), [("text-embedding-005", [VERTEX_EMBED_BATCH, 10]),
                                              ("gemini-embedding-001", [1] * (VERTEX_EMBED_BATCH + 10))])
def test_vertex_embedding_bodies(model: str, sizes: list[int]) -> None:
    texts = [f"t{i}" for i in range(VERTEX_EMBED_BATCH + 10)]
    bodies = vertex_embedding_bodies({"input": texts}, model, 256)
    assert isinstance(bodies, list) and [len(b["instances"]) for b in bodies] == sizes
    assert bodies[0]["parameters"] == {"outputDimensionality": 256} and bodies[0]["instances"][0] == {"content": "t0"}
    fake = FakeVertex()
    parsed, refused = fake._parse(bodies[0], True, "PredictRequest", "v1")
    assert refused is None and fake._check_predict(parsed, model) is None


@pytest.mark.parametrize("value", [[1, 2, 3], [[1, 2], [3]]])
def test_token_ids_cannot_be_embedded(value: Any) -> None:
    for build in (gemini_embedding_bodies, vertex_embedding_bodies):
        refused = build({"input": value}, "m", 0)
        assert isinstance(refused, Untranslatable) and refused.param == "input"


def test_embedding_answers() -> None:
    assert gemini_embedding_vectors({"embeddings": [{"values": [1, 0.5]}, {"values": [0.25]}]}, 2) == [
        [1.0, 0.5], [0.25]]
    assert gemini_embedding_vectors({"embeddings": [{"values": [1]}]}, 2) is None
    assert gemini_embedding_vectors({"embeddings": [{"values": ["x"]}]}, 1) is None
    vertex = {"predictions": [{"embeddings": {"values": [0.5], "statistics": {"token_count": 3, "truncated": False}}},
                              {"embeddings": {"values": [0.25], "statistics": {"token_count": 4}}}]}
    assert vertex_embedding_vectors(vertex, 2) == ([[0.5], [0.25]], 7)
    assert vertex_embedding_vectors({"predictions": []}, 1) is None
    assert estimated_embedding_tokens(["abcd", "abcde", ""]) == 3  # about four characters a token, rounded up


@pytest.mark.parametrize("fmt", [None, "float", "base64"])
def test_openai_embeddings(fmt: str | None) -> None:
    answer = openai_embeddings([[0.5, -1.0], [0.25, 2.0]], 9, "text-embedding-005", fmt)
    assert answer["object"] == "list" and answer["model"] == "text-embedding-005"
    assert answer["usage"] == {"prompt_tokens": 9, "total_tokens": 9}
    assert [d["index"] for d in answer["data"]] == [0, 1] and answer["data"][0]["object"] == "embedding"
    first = answer["data"][0]["embedding"]
    if fmt == "base64":
        assert struct.unpack("<2f", base64.b64decode(first)) == (0.5, -1.0)  # little-endian float32, as OpenAI
    else:
        assert first == [0.5, -1.0]


# --- token counting -----------------------------------------------------------------------------------------------

def test_count_tokens_bodies() -> None:
    payload = {"messages": [{"role": "system", "content": "Be brief."}, USER], "tools": [WEATHER],
               "max_tokens": 1, "temperature": 0.5}
    gemini = count_tokens_body(payload, FLASH, vertex=False)
    assert isinstance(gemini, dict) and set(gemini) == {"generateContentRequest"}
    inner = gemini["generateContentRequest"]
    assert inner["model"] == f"models/{FLASH}" and set(inner) == {"model", "contents", "systemInstruction", "tools"}
    assert_accepted(gemini, fake=FakeGemini(), message="CountTokensRequest")
    fake = FakeGemini()
    assert fake._check_count(fake._parse(gemini, True, "CountTokensRequest", "v1beta")[0], FLASH)[0] is None
    vertex = count_tokens_body(payload, FLASH, vertex=True)
    assert isinstance(vertex, dict) and set(vertex) == {"contents", "systemInstruction", "tools"}
    assert_accepted(vertex, fake=FakeVertex(), message="CountTokensRequest")
    refused = count_tokens_body({"messages": [USER], "functions": []}, FLASH, vertex=True)
    assert isinstance(refused, Untranslatable)


@pytest.mark.parametrize(("answer", "expected"), [
    ({"totalTokens": 31, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]}, {"input_tokens": 31}),
    ({}, {"input_tokens": 0}),  # proto3 JSON leaves a zero count out
    ({"totalTokens": "x"}, None),
    ([], None),
])
def test_input_tokens(answer: Any, expected: dict[str, int] | None) -> None:
    assert input_tokens(answer) == expected
