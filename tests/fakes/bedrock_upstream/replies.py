"""What the fake model answers, in Converse and in Anthropic Messages alike: whether it calls a tool
(``_says_call``), the arguments it passes (``example_input``), and its reply cut at a stop sequence or a token
limit (``_cut``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tests.fakes.bedrock_upstream.tokens import text_tokens


def example_input(schema: Any) -> Any:
    """A value satisfying a JSON schema's required parts: what the fake's tool call passes without ``tool_input``
    (objects get their required properties, strings "fake", numbers 1, booleans true, arrays ``minItems`` items)."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_input(properties.get(name, {})) for name in schema.get("required") or []}
    if kind == "array":
        return [example_input(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    examples: dict[str, Any] = {"string": "fake", "integer": 1, "number": 1, "boolean": True, "null": None}
    return examples.get(kind, "fake") if isinstance(kind, str) else "fake"


def _cut(text: str, limit: int | None, stops: Iterable[str]) -> tuple[str, str | None, str | None]:
    """``text`` cut at the first stop sequence (reason ``stop_sequence``) or at ``limit`` tokens (``max_tokens``)."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if hits:
        at, stop = min(hits)
        return text[:at], "stop_sequence", stop
    if limit is not None and text_tokens(text) > limit:
        return text[: limit * 4], "max_tokens", None
    return text, None, None


def _says_call(text: str) -> bool:
    return re.search(r"\bcall", text, re.IGNORECASE) is not None
