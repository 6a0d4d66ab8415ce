"""The hub <-> Bedrock embeddings translations are pure: table-driven, no event loop, no sockets.

Every InvokeModel body built here (Titan v1 and v2, Cohere, in Cohere's batches) is checked against the native schemas
the fake enforces: a body these tests accept is one the real API accepts. The answers' vectors come back as OpenAI
embeddings, floats or base64.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.bedrock_embeddings import embedding_bodies, embedding_vectors, openai_embeddings
from dataplane.translate.hub_to_bedrock import COHERE_BATCH
from tests.fakes.bedrock_upstream import COHERE_FIELDS, TITAN_V1_FIELDS, TITAN_V2_FIELDS, native_problem

pytestmark = pytest.mark.pure


# --- embeddings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "payload", "default", "expected"), [
    ("titan-v2", {"input": "hi"}, 0, [{"inputText": "hi"}]),
    ("titan-v2", {"input": ["a", "b"]}, 512, [{"inputText": "a", "dimensions": 512},
                                              {"inputText": "b", "dimensions": 512}]),
    ("titan-v2", {"input": "hi", "dimensions": 256}, 1024, [{"inputText": "hi", "dimensions": 256}]),
    ("titan-v1", {"input": ["a", "b"]}, 1536, [{"inputText": "a"}, {"inputText": "b"}]),
    ("titan-v1", {"input": "a", "dimensions": 1536}, 1536, [{"inputText": "a"}]),
    ("cohere", {"input": ["a", "b"]}, 1024, [{"texts": ["a", "b"], "input_type": "search_document"}]),
    ("cohere", {"input": "a", "dimensions": 1024}, 1024, [{"texts": ["a"], "input_type": "search_document"}]),
])
def test_embedding_bodies(model: Any, payload: dict[str, Any], default: int, expected: list[dict[str, Any]]) -> None:
    bodies = embedding_bodies(payload, model, default)
    assert bodies == expected
    fields = {"titan-v2": TITAN_V2_FIELDS, "titan-v1": TITAN_V1_FIELDS, "cohere": COHERE_FIELDS}[model]
    required = ("texts", "input_type") if model == "cohere" else ("inputText",)
    assert all(native_problem(body, fields, required) is None for body in bodies)


def test_cohere_batches() -> None:
    texts = [f"text {i}" for i in range(2 * COHERE_BATCH + 5)]
    bodies = embedding_bodies({"input": texts}, "cohere", 1024)
    assert isinstance(bodies, list)
    assert [len(b["texts"]) for b in bodies] == [COHERE_BATCH, COHERE_BATCH, 5]
    assert [t for b in bodies for t in b["texts"]] == texts


@pytest.mark.parametrize(("model", "payload", "default"), [
    ("titan-v2", {"input": "a", "dimensions": 300}, 1024),
    ("titan-v2", {"input": "a"}, 768),
    ("titan-v1", {"input": "a", "dimensions": 256}, 1536),
    ("cohere", {"input": "a", "dimensions": 256}, 1024),
])
def test_embedding_dimensions_refused(model: Any, payload: dict[str, Any], default: int) -> None:
    result = embedding_bodies(payload, model, default)
    assert isinstance(result, Untranslatable) and result.param == "dimensions"


@pytest.mark.parametrize(("model", "answer", "expected"), [
    ("titan-v2", {"embedding": [0.5, -0.25], "inputTextTokenCount": 2}, [[0.5, -0.25]]),
    ("cohere", {"embeddings": [[1.0], [0.5]], "response_type": "embeddings_floats"}, [[1.0], [0.5]]),
    ("cohere", {"embeddings": {"float": [[1.0]]}, "response_type": "embeddings_by_type"}, [[1.0]]),
    ("titan-v2", {"embedding": "nope"}, None),
    ("cohere", {"embeddings": [["x"]]}, None),
    ("cohere", [], None),
])
def test_embedding_vectors(model: Any, answer: Any, expected: list[list[float]] | None) -> None:
    assert embedding_vectors(model, answer) == expected


def test_openai_embeddings_float_and_base64() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]]
    floats = openai_embeddings(vectors, 7, "amazon.titan-embed-text-v2:0")
    assert floats == {"object": "list", "model": "amazon.titan-embed-text-v2:0",
                      "data": [{"object": "embedding", "index": 0, "embedding": vectors[0]},
                               {"object": "embedding", "index": 1, "embedding": vectors[1]}],
                      "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    encoded = openai_embeddings(vectors, 7, "m", "base64")
    decoded = [list(struct.unpack("<3f", base64.b64decode(d["embedding"]))) for d in encoded["data"]]
    assert decoded == vectors
    assert "usage" not in openai_embeddings(vectors, None, "m")  # no count: the gateway estimates, marked
