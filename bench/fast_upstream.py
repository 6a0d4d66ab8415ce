"""A fake OpenAI upstream fast enough not to be the bottleneck of a benchmark.

Speaks the exact wire format of ``POST /v1/chat/completions`` (JSON, and SSE with a final usage chunk when
``stream_options.include_usage`` is set) and ``POST /v1/embeddings`` (8 dimensions) over HTTP/1.1 keep-alive,
on a bare asyncio protocol: the benchmark measures the gateway, so the upstream must cost as little as possible.

    python -m bench.fast_upstream --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import cast

import orjson

_WORDS = ("The", " gateway", " forwarded", " this", " answer", " from", " a", " fake", " upstream", ".")


def _completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-bench0001", "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(_WORDS), "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 18, "completion_tokens": len(_WORDS), "total_tokens": 18 + len(_WORDS),
                  "prompt_tokens_details": {"cached_tokens": 0}},
    })


def _chunk(model: str, delta: dict[str, object], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _stream(model: str, include_usage: bool) -> bytes:
    parts = [_chunk(model, {"role": "assistant", "content": ""}, None)]
    parts += [_chunk(model, {"content": w}, None) for w in _WORDS]
    parts.append(_chunk(model, {}, "stop"))
    if include_usage:
        parts.append(_chunk(model, {}, None, {"prompt_tokens": 18, "completion_tokens": len(_WORDS),
                                             "total_tokens": 18 + len(_WORDS)}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


_EMBEDDING = orjson.dumps({
    "object": "list", "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.125, -0.25, 0.5, 0.0, 0.75, -0.125, 0.25, 0.0]}],
    "usage": {"prompt_tokens": 6, "total_tokens": 6},
})


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
            + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buf[:head_end].lower()
            length = 0
            idx = head.find(b"content-length:")
            if idx >= 0:
                length = int(head[idx + 15 : head.find(b"\r\n", idx) if head.find(b"\r\n", idx) > 0 else None])
            end = head_end + 4 + length
            if len(self._buf) < end:
                return
            body, self._buf = self._buf[head_end + 4 : end], self._buf[end:]
            assert self._transport is not None
            self._transport.write(self._answer(head, body))

    @staticmethod
    def _answer(head: bytes, body: bytes) -> bytes:
        if head.startswith(b"post /v1/embeddings"):
            return _response("200 OK", b"application/json", _EMBEDDING)
        if not head.startswith(b"post /v1/chat/completions"):
            return _response("404 Not Found", b"application/json", b'{"error":{"message":"not found"}}')
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _response("400 Bad Request", b"application/json", b'{"error":{"message":"bad json"}}')
        model = str(req.get("model", "unknown"))
        if req.get("stream"):
            include = bool((req.get("stream_options") or {}).get("include_usage"))
            return _response("200 OK", b"text/event-stream", _stream(model, include))
        return _response("200 OK", b"application/json", _completion(model))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
