"""Chat Completions (``POST /v1/chat/completions``) and legacy Completions (``POST /v1/completions``), answered
whole or as ``data:`` frames ending in ``data: [DONE]``."""

from __future__ import annotations

import time
from secrets import token_hex
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream.errors import INVALID, _invalid, _json
from tests.fakes.openai_upstream.prelude import _Prelude
from tests.fakes.openai_upstream.tokens import _count, _text_or_ids, word_pieces
from tests.fakes.sse import data_frame, send_frames

MAX_N = 128  # choices per request


class _Completions(_Prelude):
    """``POST /v1/chat/completions`` and ``POST /v1/completions``."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"]) + 3
        pieces = word_pieces(self.reply)
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
            return data_frame({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                    "finish_reason": finish}]})

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": p}) for p in pieces]
        chunks.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(data_frame({**base, "choices": [], "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        return await send_frames(request, resp, chunks, self.die_after_chunks)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        prompts = _text_or_ids(body.get("prompt", "<|endoftext|>"))
        if prompts is None:
            return _invalid(INVALID.format("prompt"))
        if not body.get("model"):
            return _invalid("you must provide a model parameter")
        max_tokens, n = body.get("max_tokens") or 16, body.get("n") or 1
        if not isinstance(n, int) or n > MAX_N:
            return _invalid(f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got {n} "
                            "instead.", param="n", code="integer_above_max_value")
        pieces = word_pieces(self.reply)
        finish = "length" if len(pieces) > max_tokens else "stop"
        pieces = pieces[:max_tokens]
        echoes = [p if body.get("echo") and isinstance(p, str) else "" for p in prompts for _ in range(n)]
        prompt_tokens = sum(_count(p) for p in prompts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces) * len(echoes),
                 "total_tokens": prompt_tokens + len(pieces) * len(echoes)}
        base = {"id": f"cmpl-{token_hex(14)}", "object": "text_completion", "created": int(time.time()),
                "model": body["model"]}
        if not body.get("stream"):
            return _json({**base, "choices": [{"text": echo + "".join(pieces), "index": i, "logprobs": None,
                                               "finish_reason": finish} for i, echo in enumerate(echoes)],
                          "usage": usage, "system_fingerprint": None})
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(index: int, text: str, finish_reason: str | None = None) -> bytes:
            data = {**base, "choices": [{"text": text, "index": index, "logprobs": None,
                                         "finish_reason": finish_reason}], "system_fingerprint": None}
            return data_frame({**data, "usage": None} if with_usage else data)

        chunks = []
        for index, echo in enumerate(echoes):
            chunks += [chunk(index, text) for text in ([echo] if echo else []) + pieces]
            chunks.append(chunk(index, "", finish))
        if with_usage:
            chunks.append(data_frame({**base, "choices": [], "system_fingerprint": None, "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        return await send_frames(request, resp, chunks, self.die_after_chunks)
