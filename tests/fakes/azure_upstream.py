"""A fake Azure OpenAI resource: a real aiohttp application on loopback speaking Azure's chat completions API.

``async with fake_azure(key="azure-key", deployments={"gpt-4o-mini": "gpt-4o-mini-2024-07-18"}) as fake:``
serves ``POST /openai/deployments/{name}/chat/completions?api-version=…`` on a free port (``fake.base_url`` is
the resource endpoint, no path). As Azure does, it wants the ``api-key`` header (401 with Azure's error body
otherwise), answers 404 ``DeploymentNotFound`` for an unknown deployment and 404 ``Resource not found`` for a
missing or unknown api-version, adds ``prompt_filter_results``/``content_filter_results``, and starts every
stream with a chunk whose ``choices`` is empty and which carries only ``prompt_filter_results``.

Knobs a test sets before sending: ``fail_status``/``fail_times``, ``filter_prompt`` (400 ``content_filter``),
``die_after_chunks`` (close the socket mid-stream), ``reply`` (text), ``tool_call`` ((name, arguments JSON):
answer with that call when the request offers tools). ``requests`` records what arrived.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.sse import send_frames

API_VERSIONS = frozenset({"2024-02-01", "2024-06-01", "2024-10-21", "2024-08-01-preview", "2025-01-01-preview"})
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": _FILTERS}]


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeAzure:
    """Knobs and records of one fake resource; owned by one test, mutated only by it."""

    key: str = "azure-key"
    deployments: dict[str, str] = field(default_factory=lambda: {"gpt-4o-mini": "gpt-4o-mini-2024-07-18"})
    reply: str = "Hello from the fake Azure deployment."
    tool_call: tuple[str, str] | None = None
    fail_status: int = 0
    fail_times: int = 0
    filter_prompt: bool = False
    die_after_chunks: int = -1
    requests: list[Received] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(request.path, dict(request.query), dict(request.headers), body))
        if request.query.get("api-version") not in API_VERSIONS:
            return _error(404, "404", "Resource not found")
        if request.headers.get("api-key") != self.key:
            return _error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make "
                                      "sure to provide a valid key for an active subscription and use a correct "
                                      "regional API endpoint for your resource.")
        model = self.deployments.get(request.match_info["deployment"])
        if model is None:
            return _error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you "
                                                     "created the deployment within the last 5 minutes, please wait "
                                                     "a moment and try again.")
        if self.fail_times > 0:
            self.fail_times -= 1
            if self.fail_status == 429:
                return _error(429, "429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                                          "version 2024-06-01 have exceeded token rate limit of your current "
                                          "OpenAI S0 pricing tier. Please retry after 1 second.",
                              headers={"Retry-After": "1"})
            return _error(self.fail_status, "InternalServerError", "The server had an error while processing "
                                                                   "your request. Sorry about that!")
        if self.filter_prompt:
            return web.json_response({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                           "management policy.", "type": None, "param": "prompt", "code": "content_filter",
                "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    **_FILTERS, "violence": {"filtered": True, "severity": "high"}}}}}, status=400)
        return await self._answer(request, body, model)

    async def _answer(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"]) + 3
        calling = self.tool_call is not None and bool(body.get("tools"))
        pieces = [w if i == 0 else " " + w for i, w in enumerate(self.reply.split(" "))]
        completion = 12 if calling else len(pieces)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
        ident, created = "chatcmpl-AzFake" + str(len(self.requests)), int(time.time())
        finish = "tool_calls" if calling else "stop"
        call_id = "call_az" + str(len(self.requests))
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if calling else self.reply,
                                       "refusal": None}
            if calling and self.tool_call is not None:
                message["tool_calls"] = [{"id": call_id, "type": "function", "function": {
                    "name": self.tool_call[0], "arguments": self.tool_call[1]}}]
            return web.json_response({
                "choices": [{"content_filter_results": {} if calling else _FILTERS, "finish_reason": finish,
                             "index": 0, "logprobs": None, "message": message}],
                "created": created, "id": ident, "model": model, "object": "chat.completion",
                "prompt_filter_results": _PROMPT_FILTER, "system_fingerprint": "fp_azfake", "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        base = {"created": created, "id": ident, "model": model, "object": "chat.completion.chunk",
                "system_fingerprint": "fp_azfake"}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, filters: Any = None) -> bytes:
            choice = {"content_filter_results": filters or {}, "delta": delta, "finish_reason": finish_reason,
                      "index": 0, "logprobs": None}
            return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

        # Azure's first event: no choices, only the prompt's filter results, and blank identity fields.
        chunks = [b"data: " + orjson.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                            "prompt_filter_results": _PROMPT_FILTER}) + b"\n\n"]
        if calling and self.tool_call is not None:
            name, arguments = self.tool_call
            chunks.append(chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}))
            half = len(arguments) // 2
            chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                       for part in (arguments[:half], arguments[half:])]
        else:
            chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            chunks += [chunk({"content": p}, filters=_FILTERS) for p in pieces]
        chunks.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        chunks.append(b"data: [DONE]\n\n")
        return await send_frames(request, resp, chunks, self.die_after_chunks)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@asynccontextmanager
async def fake_azure(key: str = "azure-key", deployments: dict[str, str] | None = None) -> AsyncIterator[FakeAzure]:
    fake = FakeAzure(key=key) if deployments is None else FakeAzure(key=key, deployments=deployments)
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
