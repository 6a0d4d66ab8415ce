"""Embeddings on Bedrock's InvokeModel: Titan Text Embeddings (one text a call) and Cohere Embed (a batch),
their bodies and answers, to and from the OpenAI shape. Pure.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, TypeGuard

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.hub_to_bedrock import COHERE_BATCH, TITAN_V2_DIMENSIONS, EmbeddingModel, base_model

# --- embeddings ---------------------------------------------------------------------------------------------------

def embedding_model(model_id: str) -> EmbeddingModel | None:
    """The embeddings API a Bedrock model speaks, if this module translates it."""
    model = base_model(model_id)
    if model.startswith("amazon.titan-embed-text-v2"):
        return "titan-v2"
    if model.startswith("amazon.titan-embed-text-v1"):
        return "titan-v1"
    if model.startswith("cohere.embed-"):
        return "cohere"
    return None


def embedding_texts(payload: dict[str, Any]) -> list[str]:
    """The texts of an (already validated) embeddings request: token-id input never reaches a Bedrock adapter."""
    value = payload.get("input")
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def embedding_bodies(payload: dict[str, Any], model: EmbeddingModel,
                     default_dimensions: int) -> list[dict[str, Any]] | Untranslatable:
    """The InvokeModel bodies for an embeddings request, in input order: one per text (Titan) or per
    ``COHERE_BATCH`` texts (Cohere). ``dimensions`` is the client's, else the deployment's."""
    texts = embedding_texts(payload)
    if not texts:
        return Untranslatable("'input' must hold text for this model's provider", "input")
    asked = payload.get("dimensions")
    if model == "titan-v2":
        dimensions = asked or default_dimensions or None
        if dimensions is not None and dimensions not in TITAN_V2_DIMENSIONS:
            return Untranslatable("'dimensions' must be 256, 512 or 1024 for this model", "dimensions")
        return [{"inputText": text, **({"dimensions": dimensions} if dimensions else {})} for text in texts]
    if asked is not None and asked != (default_dimensions or asked):
        return Untranslatable(f"this model produces {default_dimensions} dimensions: 'dimensions' cannot change it",
                              "dimensions")
    if model == "titan-v1":
        return [{"inputText": text} for text in texts]
    return [{"texts": texts[i:i + COHERE_BATCH], "input_type": "search_document"}
            for i in range(0, len(texts), COHERE_BATCH)]


def embedding_vectors(model: EmbeddingModel, answer: Any) -> list[list[float]] | None:
    """The vectors of one InvokeModel answer (Titan: one; Cohere: one per text), None when it is malformed."""
    if not isinstance(answer, dict):
        return None
    if model != "cohere":
        vector = answer.get("embedding")
        return [vector] if _is_vector(vector) else None
    vectors = answer.get("embeddings")
    if isinstance(vectors, dict):  # ``embeddings_by_type``: the floats
        vectors = vectors.get("float")
    return vectors if isinstance(vectors, list) and all(_is_vector(v) for v in vectors) else None


def _is_vector(value: Any) -> TypeGuard[list[float]]:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def titan_tokens(answer: dict[str, Any]) -> int | None:
    tokens = answer.get("inputTextTokenCount")
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0 else None


def openai_embeddings(vectors: list[list[float]], prompt_tokens: int | None, model: str,
                      encoding_format: Any = None) -> dict[str, Any]:
    """OpenAI's embeddings answer; ``base64`` as OpenAI encodes it (little-endian float32). Without a token count
    there is no ``usage`` (the gateway then charges its estimate, marked as one)."""
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
             if encoding_format == "base64" else v} for i, v in enumerate(vectors)]
    answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
    if prompt_tokens is not None:
        answer["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return answer
