"""A streamed answer's events, read as async generators: ``sse_batches`` yields the payloads of the answer's
``data:`` events grouped as they arrived; an upstream silent for longer than the provider's read timeout between
two reads is cut (``timeout``), and one that dies mid-stream raises ``connect``, both while iterating, so the
client's stream ends with an SSE error event. ``json_events`` and ``translated_batches`` turn a provider's events
into hub chunks; ``batches_of`` gives any ``Stream`` as batches.

Apart from ``adapters.wire`` because mypyc cannot compile async generators: ``wire`` is in the compiled request
path (``dataplane.compiled``), these run from source.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson

from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Provider
from dataplane.translate.anthropic_common import StreamError
from dataplane.upstream.adapters import LastBatch, Stream
from dataplane.upstream.adapters.wire import map_failures
from dataplane.upstream.client import Response
from dataplane.upstream.sse import SseParser


async def sse_batches(resp: Response, provider: Provider,
                      ends: Callable[[list[bytes]], bool] | None = None) -> AsyncGenerator[list[bytes], None]:
    """The payloads of the ``data:`` events until ``[DONE]`` (or the body's end), grouped as they arrived.

    ``ends`` tells, for protocols with their own end marker, whether a batch holds the last event.
    """
    parser = SseParser()
    try:
        # Closing is the ``finally``'s: an answer read to its end goes back to the pool, even when the consumer
        # stops at the last batch.
        with map_failures(provider, mid_answer=True):
            while not parser.done:
                data = await resp.read_some()
                if not data:
                    last = parser.finish()
                    if last is not None:
                        yield [last]
                    # An upstream that ends without [DONE] is tolerated here; adapters whose protocol has its own
                    # end marker (Anthropic's message_stop) check for it.
                    return
                payloads = parser.feed(data)
                if ends is not None and payloads and ends(payloads):
                    parser.done = True
                if parser.done:
                    yield LastBatch(payloads)
                    return
                if payloads:
                    yield payloads
    finally:
        # After [DONE] the connection may carry another request once the body's end arrives; a stream abandoned
        # before it (client gone, timeout) would leave unread events on it.
        if parser.done or resp.body_done:
            resp.release()
        else:
            resp.close()


async def flatten(batches: AsyncGenerator[list[bytes], None]) -> AsyncGenerator[bytes, None]:
    try:
        async for batch in batches:
            for payload in batch:
                yield payload
    finally:
        await batches.aclose()


Event = dict[str, Any]
Feed = Callable[[Event], "list[bytes] | StreamError"]


async def json_events(batches: AsyncGenerator[list[bytes], None],
                      provider: Provider) -> AsyncGenerator[list[Event], None]:
    """SSE payloads as JSON objects (a payload that is not JSON is a protocol failure; not an object: ``{}``)."""
    try:
        async for batch in batches:
            events: list[Event] = []
            for data in batch:
                try:
                    event = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed event") from None
                events.append(event if isinstance(event, dict) else {})
            yield events
    finally:
        await batches.aclose()


async def translated_batches(events: AsyncGenerator[list[Event], None], feed: Feed, finished: Callable[[], bool],
                             fail: Callable[[StreamError], UpstreamFailure],
                             unfinished: str) -> AsyncGenerator[list[bytes], None]:
    """Hub chunk payloads from a provider's stream events, one group per group of events, for the adapters that
    translate: ``feed`` turns one event into chunks (or a ``StreamError``: what came before it reaches the client
    first, then ``fail(error)`` is raised); once ``finished()`` the group is a ``LastBatch``; a stream that ends
    before is a protocol failure (``unfinished`` says what was missing)."""
    try:
        async for batch in events:
            out: list[bytes] = []
            for event in batch:
                chunks = feed(event)
                if isinstance(chunks, StreamError):
                    if out:
                        yield out
                    raise fail(chunks)
                out += chunks
                if finished():
                    yield LastBatch(out)
                    return
            if out:
                yield out
    finally:
        await events.aclose()
    raise UpstreamFailure("protocol", unfinished)


def batches_of(reply: Stream) -> AsyncGenerator[list[bytes], None]:
    return reply.batches if reply.batches is not None else _one_by_one(reply.events)


async def _one_by_one(events: AsyncGenerator[bytes, None]) -> AsyncGenerator[list[bytes], None]:
    try:
        async for payload in events:
            yield [payload]
    finally:
        await events.aclose()
