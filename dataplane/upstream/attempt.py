"""Executing a plan: attempt the candidates in order, then answer the client (JSON or SSE) and settle.

Failover happens only before the first byte of an answer reaches the client, on the conditions the route lists
(plus local problems with one candidate: a missing credential, a refused credential, an unsupported provider
type), within the route's attempt and total timeouts. Once a stream has started, an upstream failure ends it
with an SSE error event, which the official SDKs raise as an ``APIError``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from dataplane.core.accounting import Outcome, Usage, cost_micros, usage_of
from dataplane.core.attribution import Attribution
from dataplane.core.content import MessageAccumulator
from dataplane.core.decide import RoutePlan
from dataplane.core.health import Health, RetryBudget
from dataplane.errors import ApiError, UpstreamFailure, error_body, upstream_error
from dataplane.snapshot.runtime import Deployment, Route
from dataplane.upstream.adapters import Adapter, Complete, LastBatch, Stream

# Problems with one candidate that say nothing about the others: always worth trying the next one.
_ALWAYS_FAIL_OVER = frozenset({"auth", "unsupported"})


@dataclass(frozen=True, slots=True)
class Answered:
    reply: Complete | Stream
    deployment: Deployment
    attempts: int
    # Streams: the first events, read before answering so failover stays possible (empty if the stream ended
    # there), and the rest of them, grouped as they arrive.
    first_events: list[bytes] = field(default_factory=list)
    rest: AsyncGenerator[list[bytes], None] | None = None
    reason: str = ""  # why this deployment served: the strategy, or "failover:<kind of the last failure>"
    sent_at: float = 0.0  # unix seconds the first attempt was sent


@dataclass(frozen=True, slots=True)
class Failed:
    failure: UpstreamFailure
    deployment: Deployment | None
    attempts: int
    reason: str = ""
    sent_at: float = 0.0


def may_fail_over(failure: UpstreamFailure, route: Route) -> bool:
    return failure.kind in route.failover.on or failure.kind in _ALWAYS_FAIL_OVER


async def attempt(plan: RoutePlan, adapters: Mapping[str, Adapter], health: Health | None = None,
                  budget: RetryBudget | None = None) -> Answered | Failed:
    """Try the plan's candidates in order until one answers (before any byte reached the client).

    Each attempt is reported to ``health`` (time to first byte on success, the failure's kind otherwise);
    attempts after the first need the retry ``budget``'s leave, so an outage for everyone cannot turn every
    request into several.
    """
    loop = asyncio.get_running_loop()
    failover = plan.route.failover
    deadline = loop.time() + failover.total_timeout_s
    failure: UpstreamFailure | None = None  # built only when needed: most requests succeed at once
    last: Deployment | None = None
    attempts = 0
    sent_at = time.time()
    for deployment in plan.candidates:
        remaining = deadline - loop.time()
        if remaining <= 0:
            failure = UpstreamFailure("timeout", f"route {plan.route.name!r} exceeded its total timeout")
            break
        mono = time.monotonic()
        if budget is not None:
            if attempts == 0:
                budget.request(mono)
            elif failure is not None and failure.kind not in _ALWAYS_FAIL_OVER and not budget.try_retry(mono):
                break  # the retry budget is spent: the last failure is the answer
        attempts += 1
        last = deployment
        adapter = adapters.get(deployment.provider.type)
        if adapter is None:
            failure = UpstreamFailure("unsupported", f"provider type {deployment.provider.type!r} is not supported "
                                                     "by this data plane")
            continue
        if health is not None:
            health.attempting(deployment, mono)
        budget_s = min(failover.attempt_timeout_s, remaining)
        try:
            async with asyncio.timeout(budget_s):
                reply = await adapter.send(deployment, plan.request, budget_s)
                first: list[bytes] = []
                rest: AsyncGenerator[list[bytes], None] | None = None
                if isinstance(reply, Stream):
                    rest = _batches(reply)
                    first = await _first_events(reply, rest)
        except TimeoutError:
            failure = UpstreamFailure("timeout", f"provider {deployment.provider.name!r} timed out")
        except UpstreamFailure as exc:
            failure = exc
        else:
            if health is not None:
                health.succeeded(deployment, time.monotonic() - mono)
            reason = plan.route.strategy if failure is None else f"failover:{failure.kind}"
            return Answered(reply, deployment, attempts, first, rest, reason, sent_at)
        if health is not None:
            health.failed(deployment, failure.kind, time.monotonic())
        if not may_fail_over(failure, plan.route):
            break
    failure = failure or UpstreamFailure("connect", "no candidate could be attempted")
    return Failed(failure, last, attempts, f"failed:{failure.kind}", sent_at)


def _batches(reply: Stream) -> AsyncGenerator[list[bytes], None]:
    return reply.batches if reply.batches is not None else _one_by_one(reply.events)


async def _one_by_one(events: AsyncGenerator[bytes, None]) -> AsyncGenerator[list[bytes], None]:
    try:
        async for payload in events:
            yield [payload]
    finally:
        await events.aclose()


async def _first_events(reply: Stream, batches: AsyncGenerator[list[bytes], None]) -> list[bytes]:
    # An upstream that accepted the request but dies before its first event has sent the client nothing yet:
    # reading that event inside the attempt keeps failover (and the attempt timeout) applicable to it.
    try:
        return await anext(batches)
    except StopAsyncIteration:
        return []
    except BaseException:
        reply.close()
        await batches.aclose()
        raise


def failure_response(failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
    """Upstream 4xx bodies (already scrubbed) pass through when they are OpenAI errors; all else is ours."""
    if failure.kind == "4xx" and failure.body:
        try:
            parsed = orjson.loads(failure.body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return web.Response(status=failure.status, body=failure.body, headers=headers,
                                content_type="application/json")
        err = ApiError(failure.status, failure.message, "invalid_request_error", "upstream_rejected")
    else:
        err = upstream_error(failure)
    return web.Response(status=err.status, body=err.body(), headers=headers, content_type="application/json")


@dataclass(slots=True)
class StreamResult:
    usage: Usage | None = None
    first_byte_s: float | None = None
    aborted: bool = False
    failure: UpstreamFailure | None = None  # the upstream died or went idle mid-stream
    upstream_end: float = 0.0  # unix seconds the upstream body ended (or the stream was cut)
    chunks: int = 0  # upstream payloads relayed

    def charged_usage(self, estimated_prompt_tokens: int) -> Usage | None:  # see also ``complete_charged_usage``
        """What the request is charged for: the upstream's reported usage or, for a stream cut before its usage
        chunk (the client left, the upstream died), an estimate of what was produced: the prompt estimate and
        one output token per content chunk (OpenAI-compatible servers stream about a token per chunk; the first
        chunk only carries the role). A stream that produced nothing costs nothing."""
        if self.usage is not None or self.chunks == 0:
            return self.usage
        return Usage(prompt_tokens=estimated_prompt_tokens, completion_tokens=max(self.chunks - 1, 0))


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


class OpenAIStream:
    """The OpenAI wire format: ``data: <chunk>`` events, then ``data: [DONE]``. ``accumulator``, when given (the
    tenant's log keeps content), rebuilds the assistant message from the chunks."""

    __slots__ = ("_accumulator", "_include_usage")

    def __init__(self, include_usage: bool, accumulator: MessageAccumulator | None = None) -> None:
        self._include_usage = include_usage
        self._accumulator = accumulator

    def frame(self, payloads: list[bytes], result: StreamResult) -> bytes:
        if self._accumulator is not None:
            accumulate(self._accumulator, payloads)
        return _frame(payloads, result, self._include_usage)

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: ApiError) -> bytes:
        return b"data: " + error_body(err.message, err.type, err.code) + b"\n\n"


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


def complete_charged_usage(answer: Any, body_len: int, estimated_prompt_tokens: int) -> Usage:
    """What a non-streamed answer (``answer``: its parsed JSON, None if it was not JSON) is charged for: the
    reported usage or, when an OpenAI-compatible server omits it, an estimate, never nothing: the prompt estimate,
    and the body's length bounding the output tokens from above."""
    return usage_of(answer) or Usage(estimated_prompt_tokens, -(-body_len // 4))


_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


async def stream_through(request: web.Request, answered: Answered, headers: dict[str, str],
                         fmt: StreamFormat, started: float) -> tuple[web.StreamResponse, StreamResult]:
    """Relay upstream SSE events as they come, in the client's format ``fmt``.

    The events that arrived together go out in one write. Nothing is retried once the first write happened:
    an upstream that dies or goes idle mid-stream (the adapter cuts it after the provider's read timeout) ends
    the stream with ``fmt``'s error event, and ``StreamResult.failure`` says why.
    """
    reply = answered.reply
    assert isinstance(reply, Stream)
    result = StreamResult()
    resp = _SseResponse(status=200, headers={**headers, "Content-Type": "text/event-stream",
                                              "Cache-Control": "no-cache"})
    await resp.prepare(request)
    batches = answered.rest if answered.rest is not None else _batches(reply)
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
                    batch = await anext(batches)
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
        await batches.aclose()
        await reply.events.aclose()
    return resp, result


_SEPARATOR = b"\n\ndata: "


def _frame(payloads: list[bytes], result: StreamResult, include_usage: bool) -> bytes:
    """The SSE bytes for ``payloads``, noting the usage into ``result``; the usage-only chunk is dropped when
    the client did not ask for it, since the gateway forced ``include_usage`` on upstream."""
    if not payloads:
        return b""
    joined = _SEPARATOR.join(payloads)
    drop = note_usage(payloads, joined, result, include_usage)
    if drop:
        kept = [p for i, p in enumerate(payloads) if i not in drop]
        if not kept:
            return b""
        joined = _SEPARATOR.join(kept)
    return b"data: " + joined + b"\n\n"


def note_usage(payloads: list[bytes], joined: bytes, result: StreamResult, include_usage: bool = True) -> list[int]:
    """Note the usage of ``payloads`` (``joined`` with ``_SEPARATOR``) into ``result``; return the indices of the
    usage-only chunks to drop when not ``include_usage``.

    One regex pass over the whole batch finds the (rare) payloads that carry a usage object; only those are
    parsed. A match cannot span two payloads: the separator puts ``d`` where the pattern needs ``:``.
    """
    result.chunks += len(payloads)
    drop: list[int] = []
    last = -1
    for match in _USAGE_OBJECT.finditer(joined):
        i = _payload_at(payloads, match.start())
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
    return drop


def _payload_at(payloads: list[bytes], offset: int) -> int:
    """The index of the payload holding byte ``offset`` of their ``_SEPARATOR``-joined form."""
    end = 0
    for i, payload in enumerate(payloads):
        end += len(payload) + len(_SEPARATOR)
        if offset < end:
            return i
    return len(payloads) - 1


def outcome(request_id: str, snapshot: str, plan: RoutePlan, deployment: Deployment | None, attempts: int, status: int,
            usage: Usage | None, started: float, first_byte_s: float | None, aborted: bool = False,
            attribution: Attribution | None = None, upstream_s: float | None = None) -> Outcome:
    cost = cost_micros(deployment.prices, usage) if deployment is not None and usage is not None else 0
    return Outcome(request_id=request_id, snapshot=snapshot, plan=plan, deployment=deployment, attempts=attempts,
                   status=status, usage=usage, cost_micros=cost, started=started, first_byte_s=first_byte_s,
                   duration_s=time.time() - started, aborted=aborted, attribution=attribution,
                   upstream_s=upstream_s)
