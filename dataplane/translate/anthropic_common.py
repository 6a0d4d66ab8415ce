"""What both directions of the OpenAI <-> Anthropic Messages translation share: the values for what cannot be
translated, the stop-reason tables, and small readers of loosely typed JSON. Pure.

The translations themselves: ``dataplane.translate.hub_to_anthropic`` (the gateway calling Anthropic for an OpenAI
client) and ``dataplane.translate.anthropic_to_hub`` (an Anthropic client calling the gateway's ``POST /v1/messages``).
No I/O, no clock, no asyncio; what cannot be translated is a value (``Untranslatable``) the caller turns into a
400, and a stream's ``error`` event is a value too (``StreamError``). No exception escapes either module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}

@dataclass(frozen=True, slots=True)
class Untranslatable:
    """A request the other schema cannot express; ``param`` names the offending field (OpenAI-style path)."""

    message: str
    param: str | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    """An ``error`` event in an Anthropic stream (e.g. ``overloaded_error``)."""

    type: str
    message: str


def count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def json_object(arguments: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def text_of(content: Any) -> str:
    """The text of a string or of a list of text parts/blocks (other parts skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""



def call_arguments(fn: dict[str, Any]) -> dict[str, Any] | None:
    """A hub tool call's ``function.arguments`` as the JSON object every provider's tool-use block takes, or None
    when it is not one (the caller names the field in its refusal). Shared by every ``hub_to_<provider>``."""
    try:
        arguments = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        return None
    return arguments if isinstance(arguments, dict) else None
