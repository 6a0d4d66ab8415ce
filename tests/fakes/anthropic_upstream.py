"""A fake Anthropic API: a real aiohttp application on loopback speaking the Messages API's wire format.

``async with fake_anthropic(key="sk-ant-fake") as fake:`` serves ``POST /v1/messages`` and ``POST
/v1/messages/count_tokens`` on a free port (``fake.base_url`` has no path, like ``https://api.anthropic.com``). Like
the real API both want the key (``x-api-key``, or ``Authorization: Bearer`` as the installed SDK sends it; else 401
``authentication_error``) and ``anthropic-version``, refuse unknown models (404 ``not_found_error``), extra
top-level fields, roles other than user/assistant, empty text blocks, a temperature above 1 and ``tool_use`` blocks
not answered by ``tool_result`` blocks in the next user turn (all 400 ``invalid_request_error``); messages wants
``max_tokens`` (``check``), count_tokens refuses it and the other sampling fields (``check_count_tokens``). Streams
are ``event: <type>\\ndata: <json>\\n\\n`` with message_start, ping, content blocks, message_delta (stop_reason,
cumulative usage) and message_stop. count_tokens answers ``{"input_tokens": count_input_tokens(body)}``, the same
number a message for that body reports as input tokens.

Knobs: ``fail_status``/``fail_times`` (429 ``rate_limit_error``, 529 ``overloaded_error``, 500 ``api_error``),
``die_after_events`` (close the socket mid-stream), ``error_after_events`` (an ``error`` event mid-stream),
``reply``, ``tool_call`` ((name, input): answer with that call when the request offers tools),
``cache_read``/``cache_creation`` (token counts reported). ``fail_status``/``fail_times`` apply to count_tokens
too. ``requests`` records what arrived (both endpoints).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

MODELS = frozenset({"claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"})
_FIELDS = frozenset({"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
                     "stop_sequences", "stream", "tools", "tool_choice", "metadata", "thinking", "service_tier"})
_COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control",
                           "output_config", "mcp_servers", "context_management"})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _tokens(value: Any) -> int:
    return max(1, len(orjson.dumps(value)) // 4)


def count_input_tokens(body: dict[str, Any]) -> int:
    """The fake's input token count of a Messages (or count_tokens) body: a quarter of the JSON length of
    ``messages``, of ``system`` and of ``tools`` (when given), each rounded down and at least 1."""
    tools = body.get("tools")
    return _tokens(body.get("messages")) + _tokens(body.get("system", "")) + (_tokens(tools) if tools else 0)


def check(body: Any) -> str | None:
    """Why the real API would refuse ``body`` with a 400, else None (the checks our translation must satisfy)."""
    return _check(body, _FIELDS, needs_max_tokens=True)


def check_count_tokens(body: Any) -> str | None:
    """Why the real API would refuse ``body`` as a count_tokens request (a Messages body without ``max_tokens``,
    ``stream`` or sampling fields) with a 400, else None."""
    return _check(body, _COUNT_FIELDS, needs_max_tokens=False)


def _check(body: Any, fields: frozenset[str], needs_max_tokens: bool) -> str | None:
    if not isinstance(body, dict):
        return "body: Input should be an object"
    extra = sorted(set(body) - fields)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if needs_max_tokens and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    pending: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("user", "assistant"):
            return (f'messages: Unexpected role "{role}". The Messages API accepts a top-level `system` parameter, '
                    f'not "system" as an input message role.')
        blocks = m["content"] if isinstance(m.get("content"), list) else [{"type": "text", "text": m.get("content")}]
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        if pending and not pending <= results:
            return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(sorted(pending - results))}")
        if results - pending:
            return f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks"
        if not blocks and not (role == "assistant" and i == len(messages) - 1):
            return (f"messages.{i}: all messages must have non-empty content except for the optional final "
                    "assistant message")
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{i}: text content blocks must be non-empty"
        if any(b.get("type") not in ("text", "image", "tool_use", "tool_result") for b in blocks):
            return f"messages.{i}.content: unknown content block type"
        pending = {b["id"] for b in blocks if b.get("type") == "tool_use"} if role == "assistant" else set()
    return None


@dataclass
class FakeAnthropic:
    """Knobs and records of one fake server; owned by one test, mutated only by it."""

    key: str = "sk-ant-fake"
    reply: str = "Hello from the fake Claude."
    tool_call: tuple[str, dict[str, Any]] | None = None
    fail_status: int = 0
    fail_times: int = 0
    die_after_events: int = -1
    error_after_events: int = -1
    cache_read: int = 0
    cache_creation: int = 0
    requests: list[Received] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        return app

    async def _prelude(self, request: web.Request,
                       checker: Callable[[Any], str | None]) -> tuple[dict[str, Any], web.Response | None]:
        """What both endpoints do first: record the request, check the key, the version header, the body (with
        ``checker``) and the model, then the ``fail_*`` knobs. The body, and the answer that ends the request
        (None: go on)."""
        body = await request.json()
        self.requests.append(Received(request.path, dict(request.headers), body))
        if self.key not in (request.headers.get("x-api-key"), request.headers.get("Authorization", "")[7:]):
            return body, _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return body, _error(400, "invalid_request_error", "anthropic-version: header is required")
        problem = checker(body)
        if problem is not None:
            return body, _error(400, "invalid_request_error", problem)
        if body["model"] not in MODELS:
            return body, _error(404, "not_found_error", f"model: {body['model']}")
        if self.fail_times > 0:
            self.fail_times -= 1
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(self.fail_status, "api_error")
            message = {"rate_limit_error": "Number of requests has exceeded your rate limit",
                       "overloaded_error": "Overloaded"}.get(kind, "Internal server error")
            return body, _error(self.fail_status, kind, message)
        return body, None

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request, check_count_tokens)
        if answer is not None:
            return answer
        return web.json_response({"input_tokens": count_input_tokens(body)}, headers={"request-id": "req_fake"})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request, check)
        if answer is not None:
            return answer
        blocks, stop_reason = self._content(body)
        usage = {"input_tokens": count_input_tokens(body),
                 "cache_creation_input_tokens": self.cache_creation, "cache_read_input_tokens": self.cache_read,
                 "output_tokens": sum(_tokens(b.get("text") or b.get("input")) for b in blocks)}
        message = {"id": f"msg_fake{len(self.requests):04d}", "type": "message", "role": "assistant",
                   "model": body["model"], "content": blocks, "stop_reason": stop_reason, "stop_sequence": None,
                   "usage": usage}
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": "req_fake"})
        return await self._stream(request, message)

    def _content(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        if self.tool_call is not None and body.get("tools") and (body.get("tool_choice") or {}).get("type") != "none":
            name, arguments = self.tool_call
            return [{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": f"toolu_fake{len(self.requests):04d}", "name": name,
                     "input": arguments}], "tool_use"
        words = self.reply.split(" ")
        if len(words) > body["max_tokens"]:
            return [{"type": "text", "text": " ".join(words[: body["max_tokens"]])}], "max_tokens"
        return [{"type": "text", "text": self.reply}], "end_turn"

    async def _stream(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache", "request-id": "req_fake"})
        await resp.prepare(request)
        usage = message["usage"]
        start_usage = {**usage, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}),
            ("ping", {})]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                events.append(("content_block_start", {"index": index, "content_block": {"type": "text",
                                                                                         "text": ""}}))
                words = block["text"].split(" ")
                events += [("content_block_delta", {"index": index, "delta": {
                    "type": "text_delta", "text": w if i == 0 else " " + w}}) for i, w in enumerate(words)]
            else:
                events.append(("content_block_start", {"index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                raw = orjson.dumps(block["input"]).decode()
                half = len(raw) // 2
                events += [("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                              "partial_json": part}})
                           for part in ("", raw[:half], raw[half:])]
            events.append(("content_block_stop", {"index": index}))
        events.append(("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(("message_stop", {}))
        for i, (kind, data) in enumerate(events):
            if i == self.die_after_events:
                assert request.transport is not None
                request.transport.close()
                return resp
            if i == self.error_after_events:
                kind, data = "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
            await resp.write(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data})
                             + b"\n\n")
            if kind == "error":
                break
        await resp.write_eof()
        return resp


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message},
                              "request_id": "req_fake"}, status=status, headers={"request-id": "req_fake"})


@asynccontextmanager
async def fake_anthropic(key: str = "sk-ant-fake") -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(key=key)
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
