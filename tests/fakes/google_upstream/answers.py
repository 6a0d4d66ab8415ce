"""What the fakes answer, before it is JSON: the plan of one generation (``_Plan``, a ``_Candidate`` each), the
value made from a response schema (``schema_example``), the reply's stream pieces (``word_pieces``) and the
stream's frames (SSE, or one streamed JSON array)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.fakes.google_upstream.wire import _camel_keys


@dataclass
class _Candidate:
    thought: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "STOP"
    tokens: int = 0
    ratings: list[dict[str, Any]] | None = None


@dataclass
class _Plan:
    prompt: int
    details: dict[str, int]
    cached: int
    blocked: str = ""
    thoughts: int = 0
    candidates: list[_Candidate] = field(default_factory=list)



def schema_example(schema: Any) -> Any:
    """The value the fake answers for a ``responseSchema`` (Gemini's OpenAPI subset, types in any case) or a
    ``responseJsonSchema``/``parametersJsonSchema`` (JSON Schema): the first ``enum`` value or ``anyOf`` branch;
    objects with every property (in ``propertyOrdering`` order when given); arrays of ``minItems`` (at least 1)
    items; strings ``"fake"`` (dates and date-times for those formats); integers and numbers their ``minimum`` or
    1 and 1.5; booleans true; null None."""
    if not isinstance(schema, dict):
        return None
    schema = _camel_keys(schema, structs=False)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_example(schema[key][0])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "")).upper()
    if kind == "OBJECT":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        order = [k for k in schema.get("propertyOrdering") or [] if k in props]
        order += [k for k in props if k not in order]
        return {k: schema_example(props[k]) for k in order}
    if kind == "ARRAY":
        return [schema_example(schema.get("items")) for _ in range(max(1, int(schema.get("minItems") or 0)))]
    if kind == "STRING":
        return {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01"}.get(str(schema.get("format")), "fake")
    if kind == "INTEGER":
        return int(schema["minimum"]) if schema.get("minimum") is not None else 1
    if kind == "NUMBER":
        return float(schema["minimum"]) if schema.get("minimum") is not None else 1.5
    if kind == "BOOLEAN":
        return True
    return None


def word_pieces(text: str) -> list[str]:
    """The reply as the fake streams it, before grouping ``words_per_chunk`` to a chunk: words, spaces leading."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if text else []


def _sse_frames(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


def _array_frames(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for i, chunk in enumerate(chunks):
        yield (b"[" if i == 0 else b",\r\n") + orjson.dumps(chunk, option=orjson.OPT_INDENT_2)
    yield b"]"
