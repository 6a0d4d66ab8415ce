"""Embeddings (``POST /v1/embeddings``): ``embedding_vector`` of each input, as floats or base64 float32."""

from __future__ import annotations

import base64
import hashlib
import math
import struct

import orjson
from aiohttp import web

from tests.fakes.openai_upstream.errors import INVALID, _invalid, _json
from tests.fakes.openai_upstream.prelude import _Prelude
from tests.fakes.openai_upstream.tokens import _count, _text_or_ids

MAX_DIMENSIONS = 3072  # text-embedding-3-large's size, the largest OpenAI model's


def embedding_vector(value: str | list[int], dimensions: int) -> list[float]:
    """The fake's embedding of one input (a text or token ids): a function of the input alone, unit length, and
    every component a float32, so the float and the base64 answers carry exactly the same numbers."""
    seed = value.encode() if isinstance(value, str) else orjson.dumps(value)
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range((dimensions + 7) // 8))
    units = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(u * u for u in units)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(u / norm for u in units))))


class _Embeddings(_Prelude):
    """``POST /v1/embeddings``."""

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        inputs = _text_or_ids(body.get("input"))
        if inputs is None:
            return _invalid(INVALID.format("input"))
        model, fmt, dimensions = body.get("model"), body.get("encoding_format") or "float", body.get("dimensions")
        if not model:
            return _invalid("you must provide a model parameter")
        if fmt not in ("float", "base64"):
            return _invalid(f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'")
        if dimensions is not None and model == "text-embedding-ada-002":
            return _invalid("This model does not support specifying dimensions.")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return _invalid(f"Invalid value for 'dimensions' = {dimensions}. Must be greater than 0.",
                            param="dimensions")
        if dimensions is not None and dimensions > MAX_DIMENSIONS:
            return _invalid(f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal to "
                            f"{MAX_DIMENSIONS}.", param="dimensions")
        size = dimensions or self.embedding_dimensions
        data = []
        for index, value in enumerate(inputs):
            vector = embedding_vector(value, size)
            encoded = (base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() if fmt == "base64" else vector)
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_count(value) for value in inputs)
        return _json({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
