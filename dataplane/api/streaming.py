"""Relaying an upstream stream to the client: SSE out as events arrive, usage noted on the way.

``stream_through`` writes the events that arrived together in one write, in the client's ``StreamFormat`` (one
per inbound dialect: ``dataplane.api.openai.OpenAIStream``, ``dataplane.api.anthropic.AnthropicStream``).
Nothing is retried once the first write happened: an upstream that dies or goes idle mid-stream ends the stream
with the format's error event, which the official SDKs raise as an ``APIError``.
"""

from __future__ import annotations

import re
import time
from typing import Protocol

import orjson
from aiohttp import web

from dataplane.api.connection.whole_request import SENT, FastRequest, FastStream
from dataplane.core.accounting import Usage, charged_stream, usage_of
from dataplane.core.content import MessageAccumulator
from dataplane.core.validate import HubRequest
from dataplane.errors import ApiError, UpstreamFailure, upstream_error
from dataplane.upstream.adapters import LastBatch, Stream
from dataplane.upstream.adapters.event_stream import batches_of
from dataplane.upstream.alarms import Alarms
from dataplane.upstream.attempt import Answered
from dataplane.upstream.deadline import Deadline

SEPARATOR = b"\n\ndata: "  # between payloads joined for one regex pass (see ``note_usage``)


class StreamResult:
    """What relaying one stream found, filled in as it goes."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.first_byte_s: float | None = None
        self.aborted = False
        self.failure: UpstreamFailure | None = None  # the upstream died or went idle mid-stream
        self.upstream_end = 0.0  # unix seconds the upstream body ended (or the stream was cut)
        self.chunks = 0  # upstream payloads relayed
        self.content_chars = 0  # text the payloads carried (content, tool arguments), counted until usage arrives

    def charged_usage(self, request: HubRequest) -> Usage | None:
        """What the stream is charged for (``dataplane.core.accounting.charged_stream``)."""
        return charged_stream(self.usage, self.content_chars, self.chunks, request)


class StreamFormat(Protocol):
    """How a stream's upstream payloads (OpenAI chunk JSON) reach one kind of client. One per stream."""

    def frame(self, payloads: list[bytes], result: StreamResult) -> bytes:
        """The bytes to send for ``payloads``, noting their usage into ``result``."""
        ...

    def done(self) -> bytes:
        """The bytes ending a complete stream."""
        ...

    def error(self, err: ApiError) -> bytes:
        """The bytes ending a stream whose upstream failed."""
        ...


def accumulate(accumulator: MessageAccumulator, payloads: list[bytes]) -> None:
    for payload in payloads:
        try:
            accumulator.feed(orjson.loads(payload))
        except orjson.JSONDecodeError:
            continue


class _SseResponse(web.StreamResponse):
    # The head goes out with the first events (one write, one packet) instead of alone at prepare(): the
    # first events are already in hand when the response is prepared, so this delays nothing.
    _send_headers_immediately = False


# The text a chunk carries: chat ``content``, tool ``arguments``, legacy ``text``, Responses ``delta``.
# (The string's body in the "unrolled" form: runs of plain bytes between escapes, 2.5x faster than one
# alternation per byte.)
_TEXT = re.compile(rb'"(?:content|arguments|text|delta)"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')
_USAGE_KEY = b'"usage"'
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


async def stream_through(request: web.Request | FastRequest, answered: Answered, headers: dict[str, str],
                         fmt: StreamFormat, started: float, deadline: float,
                         alarms: Alarms) -> tuple[web.StreamResponse, StreamResult]:
    """Relay upstream SSE events as they come, in the client's format ``fmt``.

    The events that arrived together go out in one write. Nothing is retried once the first write happened:
    an upstream that dies or goes idle mid-stream (the adapter cuts it after the provider's read timeout) ends
    the stream with ``fmt``'s error event, and ``StreamResult.failure`` says why. A ``FastRequest``'s stream is
    written to its connection (``FastStream``), and ``SENT`` returned for the edge. ``deadline``: when the whole
    stream must have ended, by ``alarms``' clock.
    """
    reply = answered.reply
    assert isinstance(reply, Stream)
    result = StreamResult()
    headers = {**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    resp: _SseResponse | FastStream
    if isinstance(request, FastRequest):  # the edge's fast path: written to the connection as it comes
        resp = FastStream(request, headers)
    else:
        resp = _SseResponse(status=200, headers=headers)
        await resp.prepare(request)
    batches = answered.rest if answered.rest is not None else batches_of(reply)
    try:
        try:
            batch = answered.first_events
            last = b""  # the final events, sent together with the end
            while True:
                out = fmt.frame(batch, result)
                if out and result.first_byte_s is None:
                    result.first_byte_s = time.time() - started
                if isinstance(batch, LastBatch):
                    last = out
                    break
                if out:
                    await resp.write(out)
                try:
                    with Deadline(alarms, deadline):
                        batch = await anext(batches)
                except TimeoutError:
                    # The stream's total deadline (the route's total timeout): a trickling upstream cannot hold
                    # the connection open for ever.
                    reply.close()
                    raise UpstreamFailure("timeout", "the stream exceeded its total deadline") from None
                except StopAsyncIteration:
                    break
            result.upstream_end = time.time()
            end = last + fmt.done()
        except UpstreamFailure as exc:
            result.upstream_end = time.time()
            result.aborted = True
            result.failure = exc
            end = fmt.error(upstream_error(exc))
        await resp.write_eof(end)  # the last event and the end of the body in one write
    except ConnectionResetError:
        # The client went away; stop reading the upstream too.
        result.aborted = True
        result.upstream_end = result.upstream_end or time.time()
        reply.close()
    finally:
        # Each layer closes the one it wraps (``batches_of``'s one-by-one too). The reply's ``events`` are not
        # closed here: iterated, their layer closed them; never started, there is nothing to close (and closing
        # them would only register them with the loop's async generator hooks).
        await batches.aclose()
    return (SENT if isinstance(resp, FastStream) else resp), result


def note_usage(payloads: list[bytes], joined: bytes, result: StreamResult, include_usage: bool = True) -> list[int]:
    """Note the usage of ``payloads`` (``joined`` with ``SEPARATOR``) into ``result``; return the indices of the
    usage-only chunks to drop when not ``include_usage``.

    One pass over the whole batch (``bytes.find`` for the key, the pattern checked at each hit) finds the (rare)
    payloads that carry a usage object; only those are parsed. A match cannot span two payloads: the separator
    puts ``d`` where the pattern needs ``:``.
    """
    result.chunks += len(payloads)
    drop: list[int] = []
    last = -1
    # A third of the cost of ``_USAGE_OBJECT.finditer(joined)``, with the same matches.
    at = joined.find(_USAGE_KEY)
    while at >= 0:
        match = _USAGE_OBJECT.match(joined, at)
        at = joined.find(_USAGE_KEY, at + len(_USAGE_KEY))
        if match is None:
            continue
        i = _payload_at(payloads, len(joined), match.start())
        if i == last:
            continue
        last = i
        try:
            chunk = orjson.loads(payloads[i])
        except orjson.JSONDecodeError:
            chunk = None
        usage = usage_of(chunk)
        if usage is not None:
            result.usage = usage
            if not include_usage and isinstance(chunk, dict) and not chunk.get("choices"):
                drop.append(i)
    # The text is only needed for an estimate if usage never comes (one regex pass a batch): not once it came,
    # so a batch holding the usage chunk (all of a stream that arrived at once) is not scanned for it.
    if result.usage is None:
        result.content_chars += sum(len(text) for text in _TEXT.findall(joined))
    return drop


def _payload_at(payloads: list[bytes], end: int, offset: int) -> int:
    """The index of the payload holding byte ``offset`` of their ``SEPARATOR``-joined form, ``end`` bytes long.
    Counted from the last payload: the one that carries the usage, as a rule."""
    start = end
    for i in range(len(payloads) - 1, 0, -1):
        start -= len(payloads[i])
        if offset >= start:
            return i
        start -= len(SEPARATOR)
    return 0
