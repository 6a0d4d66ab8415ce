"""What every call of either fake does first, whatever its method: the request is recorded (``Received``) and its
body parsed (``_read``, ``_parse``), then put through the ``delay_s``, ``drop_connection`` and ``fail_*`` knobs
(``_knobs``, ``_failure``); ``_Prelude`` holds ``_Upstream``'s knobs and records (its fields). Also the models the
fakes know (``GEMINI_MODELS``, ``GEMINI_EMBEDDING_MODELS``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.fakes.google_upstream.errors import _violations_error, google_error
from tests.fakes.google_upstream.wire import _Parser

GEMINI_MODELS = frozenset({"gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                           "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-3-flash-preview"})
GEMINI_EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Prelude:
    """The knobs and records of one Gemini or Vertex fake (``_Upstream``'s fields), and the shared steps of every
    call."""

    vertex: ClassVar[bool] = False
    reply: str = "Hello from the fake Gemini, word by word."
    json_reply: Any = None
    tool_args: dict[str, Any] | None = None
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    block_prompt: bool | str = False
    safety_stop: bool = False
    safety_stop_words: int = 0
    safety_category: str = "HARM_CATEGORY_DANGEROUS_CONTENT"
    safety_ratings: bool = False
    finish_reason: str = ""
    thought_signatures: bool | None = None
    words_per_chunk: int = 2
    fail_status: int = 0
    fail_times: int = 0
    retry_delay_s: int = 17
    delay_s: float = 0.0
    drop_connection: bool = False
    die_after_chunks: int = -1
    models: frozenset[str] = GEMINI_MODELS
    embedding_models: dict[str, int] = field(default_factory=lambda: dict(GEMINI_EMBEDDING_MODELS))
    requests: list[Received] = field(default_factory=list)
    signatures: set[bytes] = field(default_factory=set)
    base_url: str = ""
    served: int = 0


    async def _read(self, request: web.Request) -> tuple[Any, bool]:
        """The body (parsed JSON, or None) and whether it parsed; records the request."""
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw.strip() else {}
            ok = True
        except orjson.JSONDecodeError:
            parsed, ok = None, False
        self.requests.append(Received(request.path, dict(request.query), dict(request.headers),
                                      parsed if isinstance(parsed, dict) else {}))
        return parsed, ok

    def _parse(self, raw: Any, ok: bool, message: str, version: str) -> tuple[dict[str, Any], web.Response | None]:
        if not ok:
            return {}, _violations_error([("", "Invalid JSON payload received. Unexpected token.")])
        parser = _Parser(self.vertex, version)
        body = parser.root(raw, message)
        return body, (_violations_error(parser.violations) if parser.violations else None)

    async def _knobs(self, request: web.Request) -> web.StreamResponse | None:
        """``delay_s``, ``drop_connection`` and ``fail_status``/``fail_times``, after the request passed the checks."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            return self._failure(self.fail_status)
        return None

    def _failure(self, code: int) -> web.Response:
        if code == 429:
            return google_error(429, "Resource exhausted. Please try again later. Please refer to "
                                     "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more "
                                     "details.")
        messages = {500: "Internal error encountered.", 503: "The service is currently unavailable.",
                    504: "Deadline expired before operation could complete."}
        return google_error(code, messages.get(code, "Request failed."))

    def _signing(self, model: str) -> bool:
        return self.thought_signatures if self.thought_signatures is not None else model.startswith("gemini-3")

