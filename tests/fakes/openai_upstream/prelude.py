"""What every request meets first, whatever its endpoint: it is recorded (``Received``), its bearer token checked,
a body that is not a JSON object refused, then the ``delay_s``, ``drop_connection`` and ``fail_*`` knobs
(``_Prelude``, which holds ``FakeOpenAI``'s knobs and records, among them the ``StoredResponse``s)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream.errors import UNPARSABLE, _error


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StoredResponse:
    """A Response the fake returned with ``store``: the object itself and the input items it answered."""

    response: dict[str, Any]
    context: list[dict[str, Any]]


@dataclass
class _Prelude:
    """The knobs and records of one ``FakeOpenAI`` (its fields), and what each of its endpoints does first."""

    token: str = "sk-fake"
    model_prefix: str = ""
    reply: str = "Hello from the fake upstream, word by word."
    fail_status: int = 0
    fail_times: int = 0
    drop_connection: bool = False
    delay_s: float = 0.0
    die_after_chunks: int = -1
    cached_tokens: int = 0
    embedding_dimensions: int = 8
    tool_arguments: str = "{}"
    moderation_triggers: dict[str, str] = field(default_factory=lambda: {"kill": "violence"})
    requests: list[Received] = field(default_factory=list)
    stored: dict[str, StoredResponse] = field(default_factory=dict)
    base_url: str = ""

    async def _prelude(self, request: web.Request) -> tuple[dict[str, Any], web.StreamResponse | None]:
        """What every endpoint does first: record the request, check the token, refuse a body that is not a JSON
        object, then the ``delay_s``, ``drop_connection`` and ``fail_*`` knobs. The body, and the answer that ends
        the request (None: go on)."""
        raw = await request.read()
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        self.requests.append(Received(request.path, dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return body, _error(401, f"Incorrect API key provided: {request.headers.get('Authorization', '')[7:]}",
                                "invalid_request_error", "invalid_api_key")
        if not isinstance(parsed, dict):
            return body, _error(400, UNPARSABLE, "invalid_request_error", None)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return body, web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            if self.fail_status == 429:
                return body, _error(429, "Rate limit reached", "requests", "rate_limit_exceeded")
            if self.fail_status >= 500:
                return body, _error(self.fail_status, "The server had an error", "server_error", None)
            return body, _error(self.fail_status, "Invalid request", "invalid_request_error", "bad_request")
        return body, None
