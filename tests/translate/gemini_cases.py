"""What the Gemini translation tests share: the model, messages and tool they use, and the Google fake as judge.

``assert_accepted`` runs a body through the Google fake's own proto-JSON parsing and request checks (unknown fields,
wrong types and enums, roles, function call/response turns, ranges, Gemini 3's thought signatures), for both the Gemini
API and Vertex AI; ``request`` builds a GenerateContentRequest both would take, and ``answer_of`` is the fake's answer
builder's GenerateContentResponse to it, so both directions are exercised against the wire formats the adapters see.
"""

from __future__ import annotations

from typing import Any

from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.hub_to_gemini import gemini_request
from tests.fakes.google_upstream import FakeGemini, FakeVertex

FLASH = "gemini-2.5-flash"
USER: dict[str, Any] = {"role": "user", "content": "Hi"}
WEATHER: dict[str, Any] = {"type": "function", "function": {
    "name": "weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}}


def assert_accepted(body: dict[str, Any], model: str = FLASH, fake: FakeGemini | FakeVertex | None = None,
                    message: str = "GenerateContentRequest") -> None:
    """Both APIs would take ``body`` (the fake's parsing and checks; ``fake`` to check with one that signed)."""
    for upstream in ([fake] if fake is not None else [FakeGemini(), FakeVertex()]):
        version = "v1" if upstream.vertex else "v1beta"
        parsed, refused = upstream._parse(body, True, message, version)
        assert refused is None, f"Google would refuse this body: {refused.text}"
        if message == "GenerateContentRequest":
            problem = upstream._check_generate(parsed, model, message)
            assert problem is None, f"Google would refuse this request: {problem}"


def request(max_output_tokens: int = 1000, model: str = FLASH, **fields: Any) -> dict[str, Any]:
    body = gemini_request({"model": "route", "messages": [USER], **fields}, max_output_tokens, model)
    assert not isinstance(body, Untranslatable), body
    assert_accepted(body, model)
    return body


def answer_of(fake: FakeGemini | FakeVertex, body: dict[str, Any], model: str = FLASH) -> dict[str, Any]:
    """The fake's GenerateContentResponse to ``body``, as JSON."""
    parsed, refused = fake._parse(body, True, "GenerateContentRequest", "v1")
    assert refused is None
    plan = fake._plan(parsed, model, "resp-1")
    response: dict[str, Any] = fake._response(plan, fake._envelope(model, "resp-1", "2025-01-01T00:00:00Z"))
    return response
