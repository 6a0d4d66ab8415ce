"""Moderations (``POST /v1/moderations``): one result per input, flagged by ``moderation_triggers``."""

from __future__ import annotations

from secrets import token_hex
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream.errors import INVALID, _invalid, _json
from tests.fakes.openai_upstream.prelude import _Prelude

MODERATION_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                         "sexual/minors", "violence", "violence/graphic")
_IMAGE_CATEGORIES = frozenset({"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence",
                               "violence/graphic"})


class _Moderations(_Prelude):
    """``POST /v1/moderations``."""

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        given, model = body.get("input"), body.get("model") or "omni-moderation-latest"
        groups: list[tuple[str, bool]] | None = None
        if isinstance(given, str) or (isinstance(given, list) and given and all(isinstance(g, str) for g in given)):
            groups = [(text, False) for text in ([given] if isinstance(given, str) else given)]
        elif isinstance(given, list) and given and all(isinstance(g, dict) for g in given):
            kinds = {part.get("type") for part in given}
            if kinds <= {"text", "image_url"}:
                text = "\n".join(str(part.get("text", "")) for part in given if part.get("type") == "text")
                groups = [(text, "image_url" in kinds)]
        if groups is None:
            return _invalid(INVALID.format("input"))
        results = [self._moderate(text, image, model.startswith("omni")) for text, image in groups]
        return _json({"id": f"modr-{token_hex(16)}", "model": model, "results": results})

    def _moderate(self, text: str, image: bool, omni: bool) -> dict[str, Any]:
        hits = {category for word, category in self.moderation_triggers.items() if word.lower() in text.lower()}
        result: dict[str, Any] = {
            "flagged": bool(hits), "categories": {c: c in hits for c in MODERATION_CATEGORIES},
            "category_scores": {c: 0.9 if c in hits else 1e-06 for c in MODERATION_CATEGORIES}}
        if omni:
            result["category_applied_input_types"] = {
                c: (["text"] if text else []) + (["image"] if image and c in _IMAGE_CATEGORIES else [])
                for c in MODERATION_CATEGORIES}
        return result
