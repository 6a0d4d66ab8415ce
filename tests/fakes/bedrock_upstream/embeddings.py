"""The fake's embeddings: ``embedding_vector`` (a function of the text alone, float32 components) and the Cohere
embedding types derived from it (``cohere_embeddings``)."""

from __future__ import annotations

import hashlib
import math
import struct


def embedding_vector(text: str, dimensions: int, normalize: bool = True) -> list[float]:
    """The fake's embedding of a text: a function of the text alone; unit length when ``normalize``, else components
    in [-1, 1) as produced. Every component is a float32 value."""
    raw = b"".join(hashlib.sha256(text.encode() + i.to_bytes(4, "little")).digest()
                   for i in range((dimensions + 7) // 8))
    units = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = (math.sqrt(sum(u * u for u in units)) or 1.0) if normalize else 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(u / norm for u in units))))


def _int8(vector: list[float]) -> list[int]:
    scale = 127 / (max(abs(v) for v in vector) or 1.0)
    return [max(-128, min(127, round(v * scale))) for v in vector]


def _packed_bits(vector: list[float]) -> list[int]:
    bits = [1 if v > 0 else 0 for v in vector]
    return [int("".join(map(str, bits[i:i + 8])).ljust(8, "0"), 2) for i in range(0, len(bits), 8)]


def cohere_embeddings(vector: list[float], kind: str) -> list[float] | list[int]:
    """One Cohere embedding of ``kind`` (float, int8, uint8, binary, ubinary) derived from the float ``vector``:
    int8 scaled so the largest component is ±127, uint8 that + 128, ubinary the signs packed 8 per byte (MSB first),
    binary that - 128."""
    if kind == "int8":
        return _int8(vector)
    if kind == "uint8":
        return [v + 128 for v in _int8(vector)]
    if kind == "ubinary":
        return _packed_bits(vector)
    if kind == "binary":
        return [v - 128 for v in _packed_bits(vector)]
    return vector
