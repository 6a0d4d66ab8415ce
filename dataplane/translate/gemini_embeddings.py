"""Embeddings and token counting on Google's endpoints: the Gemini API's ``batchEmbedContents``,
Vertex's ``:predict``, and ``countTokens``, to and from the OpenAI shapes. Pure.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from dataplane.translate.anthropic_common import Untranslatable, count
from dataplane.translate.hub_to_gemini import GEMINI_EMBED_BATCH, VERTEX_EMBED_BATCH, gemini_request

# --- embeddings --------------------------------------------------------------------------------------------------

def embedding_texts(payload: dict[str, Any]) -> list[str] | Untranslatable:
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return Untranslatable("this model's provider embeds text only: 'input' must be a string or strings, not "
                              "token ids", "input")
    return texts


def _dimensions(payload: dict[str, Any], default_dimensions: int) -> int | None:
    asked = payload.get("dimensions")
    return asked if isinstance(asked, int) and asked > 0 else (default_dimensions or None)


def gemini_embedding_bodies(payload: dict[str, Any], upstream_model: str,
                            default_dimensions: int) -> list[dict[str, Any]] | Untranslatable:
    """The Gemini API's ``batchEmbedContents`` bodies for the hub embeddings payload, ``GEMINI_EMBED_BATCH``
    texts each, in order."""
    texts = embedding_texts(payload)
    if isinstance(texts, Untranslatable):
        return texts
    dims = _dimensions(payload, default_dimensions)
    model = upstream_model if upstream_model.startswith("models/") else f"models/{upstream_model}"
    requests = [{"model": model, "content": {"parts": [{"text": t}]},
                 **({"outputDimensionality": dims} if dims else {})} for t in texts]
    return [{"requests": requests[i:i + GEMINI_EMBED_BATCH]} for i in range(0, len(requests), GEMINI_EMBED_BATCH)]


def vertex_embedding_bodies(payload: dict[str, Any], upstream_model: str,
                            default_dimensions: int) -> list[dict[str, Any]] | Untranslatable:
    """Vertex's ``:predict`` bodies for the hub embeddings payload, in order: ``VERTEX_EMBED_BATCH`` texts each,
    one for ``gemini-embedding-*`` models (Vertex takes one instance per request of them)."""
    texts = embedding_texts(payload)
    if isinstance(texts, Untranslatable):
        return texts
    dims = _dimensions(payload, default_dimensions)
    parameters = {"outputDimensionality": dims} if dims else {}
    step = 1 if upstream_model.startswith("gemini-embedding") else VERTEX_EMBED_BATCH
    return [{"instances": [{"content": t} for t in texts[i:i + step]], **({"parameters": parameters}
                                                                           if parameters else {})}
            for i in range(0, len(texts), step)]


def _values(embedding: Any) -> list[float] | None:
    values = embedding.get("values") if isinstance(embedding, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        return None
    return [float(v) for v in values]


def gemini_embedding_vectors(answer: Any, expected: int) -> list[list[float]] | None:
    """The vectors of a ``batchEmbedContents`` answer (``{embeddings: [{values}]}``); None if malformed."""
    items = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        return None
    vectors = [_values(item) for item in items]
    return None if any(v is None for v in vectors) else [v for v in vectors if v is not None]


def vertex_embedding_vectors(answer: Any, expected: int) -> tuple[list[list[float]], int] | None:
    """The vectors of a ``:predict`` answer and the sum of their ``statistics.token_count``; None if malformed."""
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected:
        return None
    vectors, tokens = [], 0
    for prediction in predictions:
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        values = _values(embeddings)
        if values is None or not isinstance(embeddings, dict):
            return None
        vectors.append(values)
        statistics = embeddings.get("statistics")
        tokens += count(statistics.get("token_count")) if isinstance(statistics, dict) else 0
    return vectors, tokens


def estimated_embedding_tokens(texts: list[str]) -> int:
    """Gemini's batchEmbedContents reports no token counts: about four characters a token, rounded up per text."""
    return sum(-(-len(t) // 4) for t in texts)


def openai_embeddings(vectors: list[list[float]], prompt_tokens: int, model: str,
                      encoding_format: Any = None) -> dict[str, Any]:
    """OpenAI's embeddings answer; ``base64`` as OpenAI encodes it (little-endian float32)."""
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
             if encoding_format == "base64" else v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


# --- token counting ----------------------------------------------------------------------------------------------

def count_tokens_body(payload: dict[str, Any], upstream_model: str, vertex: bool) -> dict[str, Any] | Untranslatable:
    """The countTokens body for a hub chat payload: what ``gemini_request`` would send, without its generation
    settings (they do not change the prompt's count). The Gemini API counts the system instruction and tools only
    inside ``generateContentRequest``; Vertex takes them at the top level."""
    request = gemini_request(payload, 0, upstream_model)
    if isinstance(request, Untranslatable):
        return request
    counted = {k: v for k, v in request.items() if k in ("contents", "systemInstruction", "tools")}
    if vertex:
        return counted
    model = upstream_model if upstream_model.startswith("models/") else f"models/{upstream_model}"
    return {"generateContentRequest": {"model": model, **counted}}


def input_tokens(answer: Any) -> dict[str, int] | None:
    """``{"input_tokens": totalTokens}`` of a countTokens answer; None if it has no count."""
    total = answer.get("totalTokens", 0) if isinstance(answer, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    return {"input_tokens": total}
