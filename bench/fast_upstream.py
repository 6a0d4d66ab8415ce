"""A fake OpenAI upstream fast enough not to be the bottleneck of a benchmark.

Speaks the exact wire format of ``POST /v1/chat/completions`` (JSON, and SSE with a final usage chunk when
``stream_options.include_usage`` is set) and ``POST /v1/embeddings`` (8 dimensions) over HTTP/1.1 keep-alive,
on a bare asyncio protocol: the benchmark measures the gateway, so the upstream must cost as little as possible.

A chat request for a model whose name ends in ``-delayed`` is answered after a delay uniform over
``--delay-ms`` (default 10-30): a fixed delay would keep a load generator's connections in lockstep, so a proxy
would see whole bursts at once and measure its queueing rather than its overhead. By default the delays follow
a golden-ratio (Weyl) sequence rather than random draws: every delay differs from the last, but any N consecutive
ones cover the range evenly, so two measurements of N requests compare nearly the same delays and the difference
of their percentiles (a proxy's added latency) is not drowned in sampling error: with random draws over 20 ms,
the difference of two p50s of 1,000 requests each has a standard deviation of about 0.45 ms; with the sequence,
about 0.04 ms. ``--delay-order random`` draws them instead.

Delays need sub-millisecond timers. uvloop's (libuv's) are whole milliseconds on a grid that absorbs a proxy's
added time; the standard asyncio loop's epoll selector rounds each wait up to a whole millisecond, so an answer
leaves up to a millisecond late and the latencies bunch on steps a millisecond apart: the p50 of 143 requests
directly jumped between 20.33 and 21.23 ms from one 3-second run to the next, more than any proxy adds. So a
delayed benchmark runs this upstream on the standard loop (``--loop asyncio``) with ``PreciseEpollSelector``,
which waits in ``select()`` (microseconds) on the epoll descriptor, and with a timer slack of 1 µs (Linux's
default lets a timed wait end up to 50 µs late): the same p50 then holds to about 0.1 ms (20.23-20.40 ms over
eight runs), what is left being the machine's own wake-ups.

    python -m bench.fast_upstream --port 9100 [--loop uvloop|asyncio] [--delay-ms 10-30] [--delay-order even]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import random
import select
import selectors
import time
from typing import Literal, cast

import orjson

DELAYED_SUFFIX = "-delayed"
DEFAULT_DELAY_S = (0.010, 0.030)
_GOLDEN = (5**0.5 - 1) / 2
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


class Delays:
    """Delays uniform over ``[low, high]`` seconds, in golden-ratio order (``even``) or drawn at random.

    One instance serves every connection of a server, so consecutive requests get far-apart delays.
    """

    def __init__(self, low: float, high: float, order: Literal["even", "random"] = "even") -> None:
        self._low, self._span, self._random = low, high - low, order == "random"
        self._x = 0.0

    def next(self) -> float:
        if self._random:
            return self._low + self._span * random.random()
        self._x = (self._x + _GOLDEN) % 1.0
        return self._low + self._span * self._x


class _Protocol(asyncio.Protocol):
    def __init__(self, delays: Delays | None = None) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._delays = delays or Delays(*DEFAULT_DELAY_S)
        self._last_due = 0.0  # answers on one connection leave in order, even when pipelined

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
            answer, delayed = self._answer(head, body)
            if delayed or self._last_due:
                self._send_later(answer, delayed)
            else:
                assert self._transport is not None
                self._transport.write(answer)

    def _send_later(self, answer: bytes, delayed: bool) -> None:
        loop = asyncio.get_running_loop()
        delay = self._delays.next() if delayed else 0.0
        self._last_due = due = max(loop.time() + delay, self._last_due + 1e-6)
        loop.call_at(due, self._send, answer, due)

    def _send(self, answer: bytes, due: float) -> None:
        if self._last_due == due:
            self._last_due = 0.0
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)

    @staticmethod
    def _answer(head: bytes, body: bytes) -> tuple[bytes, bool]:
        """The answer's bytes, and whether it is to be delayed."""
        if head.startswith(b"post /v1/embeddings"):
            return _response("200 OK", b"application/json", _EMBEDDING), False
        if not head.startswith(b"post /v1/chat/completions"):
            return _response("404 Not Found", b"application/json", b'{"error":{"message":"not found"}}'), False
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _response("400 Bad Request", b"application/json", b'{"error":{"message":"bad json"}}'), False
        model = str(req.get("model", "unknown"))
        delayed = model.endswith(DELAYED_SUFFIX)
        if req.get("stream"):
            include = bool((req.get("stream_options") or {}).get("include_usage"))
            return _response("200 OK", b"text/event-stream", _stream(model, include)), delayed
        return _response("200 OK", b"application/json", _completion(model)), delayed


class PreciseEpollSelector(selectors.EpollSelector):
    """epoll, waiting with microsecond timeouts: a timed wait blocks in ``select()`` on the epoll descriptor (it
    turns readable when any registered descriptor has events), then harvests the events without blocking; an
    untimed or zero wait is epoll's own. ``EpollSelector`` rounds a timeout up to whole milliseconds."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            select.select([self.fileno()], [], [], timeout)
            timeout = 0
        return super().select(timeout)


def _fine_timer_slack() -> None:
    """Let this thread's timed waits end within 1 µs of their time (``prctl(PR_SET_TIMERSLACK)``, Linux)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the default slack
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK = 29


async def serve(host: str, port: int, delays: Delays) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(delays), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def parse_delay_ms(text: str) -> tuple[float, float]:
    """``"10-30"`` → ``(0.010, 0.030)`` seconds."""
    low, _, high = text.partition("-")
    low_s, high_s = float(low) / 1000, float(high or low) / 1000
    if not 0 <= low_s <= high_s:
        raise argparse.ArgumentTypeError(f"not a delay range in ms: {text!r}")
    return low_s, high_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--delay-ms", dest="delay_s", type=parse_delay_ms, default=DEFAULT_DELAY_S,
                        help=f"delay range of models named *{DELAYED_SUFFIX}, LOW-HIGH in ms (default 10-30)")
    parser.add_argument("--delay-order", choices=("even", "random"), default="even",
                        help="golden-ratio sequence (default) or random draws")
    args = parser.parse_args()
    delays = Delays(args.delay_s[0], args.delay_s[1], order=args.delay_order)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args.host, args.port, delays))
    else:
        _fine_timer_slack()
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(PreciseEpollSelector())) as runner:
            runner.run(serve(args.host, args.port, delays))


if __name__ == "__main__":
    main()
