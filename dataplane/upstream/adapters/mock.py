"""The built-in mock provider: answers locally in the exact OpenAI wire format, for demos, tests and benchmarks.

Token counts are realistic (about four characters per token, plus per-message overhead) so cost accounting and
budgets behave as they would against a real provider. ``provider.mock`` sets a delay before the answer starts
and a streaming pace in tokens per second.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from dataplane.core.validate import ChatRequest
from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Deployment
from dataplane.upstream.adapters import Complete, Stream

_DEFAULT_REPLY_WORDS = 24


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_tokens(payload: dict[str, Any]) -> int:
    # Like OpenAI's accounting: a few tokens of framing per message, plus three to prime the reply.
    return sum(4 + count_tokens(_text_of(m.get("content"))) for m in payload["messages"]) + 3


def reply_words(payload: dict[str, Any], limit: int | None) -> tuple[list[str], str]:
    """The words of the answer (an echo of the last user message) and the finish reason."""
    last = next((_text_of(m.get("content")) for m in reversed(payload["messages"]) if m.get("role") == "user"), "")
    words = ("This is a mock response to: " + (last or "your request")).split()
    words = (words * (_DEFAULT_REPLY_WORDS // len(words) + 1))[: max(len(words), 8)]
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if limit is not None:
        out: list[str] = []
        used = 0
        for piece in pieces:
            used += count_tokens(piece)
            if used > limit:
                return out or [pieces[0][: limit * 4]], "length"
            out.append(piece)
    return pieces, "stop"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0}}


class MockAdapter:
    """Stateless; task-safe."""

    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.mock_delay_ms:
            if provider.mock_delay_ms / 1000 > timeout_s:
                await asyncio.sleep(timeout_s)
                raise UpstreamFailure("timeout", f"provider {provider.name!r} timed out")
            await asyncio.sleep(provider.mock_delay_ms / 1000)
        payload = request.payload
        pieces, finish = reply_words(payload, request.max_tokens)
        prompt = prompt_tokens(payload)
        completion = sum(count_tokens(p) for p in pieces)
        ident = "chatcmpl-mock" + os.urandom(12).hex()
        created = int(time.time())
        if not request.stream:
            return Complete(orjson.dumps({
                "id": ident, "object": "chat.completion", "created": created, "model": deployment.upstream_model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces), "refusal": None},
                             "logprobs": None, "finish_reason": finish}],
                "usage": _usage(prompt, completion), "system_fingerprint": None,
            }))
        return Stream(self._chunks(deployment, ident, created, pieces, finish, prompt, completion), lambda: None)

    async def _chunks(self, deployment: Deployment, ident: str, created: int, pieces: list[str], finish: str,
                      prompt: int, completion: int) -> AsyncGenerator[bytes, None]:
        base = {"id": ident, "object": "chat.completion.chunk", "created": created,
                "model": deployment.upstream_model, "system_fingerprint": None}
        pace = deployment.provider.mock_tokens_per_second

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return orjson.dumps({**base, "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]})

        yield chunk({"role": "assistant", "content": ""})
        for piece in pieces:
            if pace:
                await asyncio.sleep(count_tokens(piece) / pace)
            yield chunk({"content": piece})
        yield chunk({}, finish)
        yield orjson.dumps({**base, "choices": [], "usage": _usage(prompt, completion)})
