"""A streamed answer's events, layered as async generators over ``wire.SseBatches`` (the payloads of the answer's
``data:`` events grouped as they arrived): ``json_events`` and ``translated_batches`` turn a provider's events
into hub chunks, ``flatten`` gives them one by one; ``batches_of`` gives any ``Stream`` as batches. A failure
raised while iterating (``timeout``, ``connect``) ends the client's stream with an SSE error event.

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
from dataplane.upstream.adapters import Batches, LastBatch, Stream


async def flatten(batches: Batches) -> AsyncGenerator[bytes, None]:
    try:
        async for batch in batches:
            for payload in batch:
                yield payload
    finally:
        await batches.aclose()


Event = dict[str, Any]
Feed = Callable[[Event], "list[bytes] | StreamError"]


async def json_events(batches: Batches,
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


def batches_of(reply: Stream) -> Batches:
    return reply.batches if reply.batches is not None else _one_by_one(reply.events)


async def _one_by_one(events: AsyncGenerator[bytes, None]) -> AsyncGenerator[list[bytes], None]:
    try:
        async for payload in events:
            yield [payload]
    finally:
        await events.aclose()
