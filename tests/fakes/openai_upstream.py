"""A fake OpenAI server: a real aiohttp application on loopback speaking the chat completions wire format.

``async with fake_openai(token="sk-fake") as fake:`` starts it on a free port; ``fake.base_url`` ends in
``/v1``. It checks the bearer token (401 with OpenAI's error body otherwise), records every request it
received (``fake.requests``), and has knobs a test sets before sending: ``fail_status``/``fail_times`` (answer
an error status that many times), ``drop_connection`` (close the socket without answering), ``delay_s`` (wait
before answering), ``die_after_chunks`` (close the socket in the middle of a stream), ``reply`` (the content).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.sse import send_frames


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """Knobs and records of one fake server; owned by one test, mutated only by it."""

    token: str = "sk-fake"
    model_prefix: str = ""
    reply: str = "Hello from the fake upstream, word by word."
    fail_status: int = 0
    fail_times: int = 0
    drop_connection: bool = False
    delay_s: float = 0.0
    die_after_chunks: int = -1
    cached_tokens: int = 0
    requests: list[Received] = field(default_factory=list)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(request.path, dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, f"Incorrect API key provided: {request.headers.get('Authorization', '')[7:]}",
                          "invalid_request_error", "invalid_api_key")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            if self.fail_status == 429:
                return _error(429, "Rate limit reached", "requests", "rate_limit_exceeded")
            if self.fail_status >= 500:
                return _error(self.fail_status, "The server had an error", "server_error", None)
            return _error(self.fail_status, "Invalid request", "invalid_request_error", "bad_request")
        prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"]) + 3
        words = self.reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces),
                 "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
        ident, created = "chatcmpl-fake123", int(time.time())
        if not body.get("stream"):
            return web.json_response({
                "id": ident, "object": "chat.completion", "created": created, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage, "system_fingerprint": "fp_fake"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return b"data: " + orjson.dumps(data) + b"\n\n"

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": p}) for p in pieces]
        chunks.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        chunks.append(b"data: [DONE]\n\n")
        return await send_frames(request, resp, chunks, self.die_after_chunks)


def _error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": None, "code": code}},
                             status=status)


@asynccontextmanager
async def fake_openai(token: str = "sk-fake") -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(token=token)
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()
