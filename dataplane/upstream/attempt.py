"""Executing a plan's upstream side: attempt the candidates in order until one answers.

Failover happens only before the first byte of an answer reaches the client, on the conditions the route lists
(plus local problems with one candidate: a missing credential, a refused credential, an unsupported provider
type), within the route's attempt and total timeouts. A stream's first events are read inside the attempt, so
an upstream that dies before them still fails over; once the client has bytes (``dataplane.api.streaming``),
an upstream failure ends the stream instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson

from dataplane.core.cost_bound import estimate_tokens
from dataplane.core.decide import RoutePlan
from dataplane.core.health import Health, RetryBudget
from dataplane.core.validate import HubRequest
from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Deployment, Route
from dataplane.upstream.adapters import Adapter, Batches, Complete, Stream
from dataplane.upstream.adapters.event_stream import batches_of
from dataplane.upstream.alarms import Alarms
from dataplane.upstream.client import TRACE_HEADERS
from dataplane.upstream.deadline import Deadline

if TYPE_CHECKING:
    from dataplane.record.trace_context import RequestTrace

# Problems with one candidate that say nothing about the others: always worth trying the next one.
# A malformed answer ("protocol") is one upstream misbehaving, too.
_ALWAYS_FAIL_OVER = frozenset({"auth", "unsupported", "protocol"})


@dataclass(unsafe_hash=True)
class Answered:
    reply: Final[Complete | Stream]
    deployment: Final[Deployment]
    attempts: Final[int]
    # Streams: the first events, read before answering so failover stays possible (empty if the stream ended
    # there), and the rest of them, grouped as they arrive.
    first_events: Final[list[bytes]]
    rest: Final[Batches | None]
    reason: Final[str]  # why this deployment served: the strategy, or "failover:<kind of the last failure>"
    sent_at: Final[float]  # unix seconds the first attempt was sent

    def __init__(self, reply: Complete | Stream, deployment: Deployment, attempts: int,
                 first_events: list[bytes] | None = None, rest: Batches | None = None,
                 reason: str = "", sent_at: float = 0.0) -> None:
        self.reply = reply
        self.deployment = deployment
        self.attempts = attempts
        self.first_events = first_events if first_events is not None else []
        self.rest = rest
        self.reason = reason
        self.sent_at = sent_at


@dataclass(unsafe_hash=True)
class Failed:
    failure: Final[UpstreamFailure]
    deployment: Final[Deployment | None]
    attempts: Final[int]
    reason: Final[str]
    sent_at: Final[float]

    def __init__(self, failure: UpstreamFailure, deployment: Deployment | None, attempts: int, reason: str = "",
                 sent_at: float = 0.0) -> None:
        self.failure = failure
        self.deployment = deployment
        self.attempts = attempts
        self.reason = reason
        self.sent_at = sent_at


def may_fail_over(failure: UpstreamFailure, route: Route) -> bool:
    return failure.kind in route.failover.on or failure.kind in _ALWAYS_FAIL_OVER


async def attempt(plan: RoutePlan, adapters: Mapping[str, Adapter], alarms: Alarms, health: Health | None = None,
                  budget: RetryBudget | None = None, trace: RequestTrace | None = None) -> Answered | Failed:
    """Try the plan's candidates in order until one answers (before any byte reached the client).

    Each attempt is reported to ``health`` (time to first byte on success, the failure's kind otherwise);
    attempts after the first need the retry ``budget``'s leave, so an outage for everyone cannot turn every
    request into several. A ``trace`` (sampled, or forwarding the client's) gets each attempt's trace headers sent
    (``TRACE_HEADERS``, read by the upstream client) and, when sampled, its start, end and failure. ``alarms``: the
    loop's timers (``dataplane.upstream.alarms``), which the attempts' deadlines are measured by.
    """
    reply: Complete | Stream | None = None
    failover = plan.route.failover
    deadline = alarms.time() + failover.total_timeout_s
    failure: UpstreamFailure | None = None  # built only when needed: most requests succeed at once
    last: Deployment | None = None
    attempts = 0
    sent_at = time.time()
    for deployment in plan.candidates:
        remaining = deadline - alarms.time()
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
        if plan.request.surface == "count_tokens" and "count_tokens" not in deployment.surfaces:
            # No counting endpoint there: the gateway's estimate, marked as one (never a silently wrong number).
            return Answered(estimated_count(plan.request), deployment, attempts, reason="estimate", sent_at=sent_at)
        adapter = adapters.get(deployment.provider.type)
        if adapter is None:
            failure = UpstreamFailure("unsupported", f"provider type {deployment.provider.type!r} is not supported "
                                                     "by this data plane")
            continue
        if health is not None:
            health.attempting(deployment, mono)
        budget_s = min(failover.attempt_timeout_s, remaining)
        reply = None
        first: list[bytes] = []
        rest: Batches | None = None
        if trace is not None:
            TRACE_HEADERS.set(trace.attempting(deployment))
        try:
            with Deadline(alarms, alarms.time() + budget_s):
                reply = await adapter.send(deployment, plan.request, budget_s)
                if isinstance(reply, Stream):
                    rest = batches_of(reply)
                    first = await _first_events(reply, rest)
            # A 2xx that is not what the API promises (not JSON, no choices, no events) is the upstream failing:
            # fail over now, before the client has a byte, rather than pass garbage off as success.
            reply, malformed = checked_answer(plan.request, reply, first)
            if malformed:
                raise UpstreamFailure("protocol", f"provider {deployment.provider.name!r} answered 2xx with "
                                                  f"{malformed}")
        except TimeoutError:
            failure = UpstreamFailure("timeout", f"provider {deployment.provider.name!r} timed out")
        except UpstreamFailure as exc:
            failure = exc
            if isinstance(reply, Stream):  # the first events were garbage: stop reading the stream
                reply.close()
                if rest is not None:
                    await rest.aclose()
        else:
            if trace is not None:
                trace.attempt_ended(None)
            if health is not None:
                health.succeeded(deployment, time.monotonic() - mono)
            reason = plan.route.strategy if failure is None else f"failover:{failure.kind}"
            return Answered(reply, deployment, attempts, first, rest, reason, sent_at)
        if trace is not None:
            trace.attempt_ended(failure)
        if health is not None:
            health.failed(deployment, failure.kind, time.monotonic(), failure.message)
        if not may_fail_over(failure, plan.route):
            break
    failure = failure or UpstreamFailure("connect", "no candidate could be attempted")
    return Failed(failure, last, attempts, f"failed:{failure.kind}", sent_at)


# The top-level field an answer of each surface must have (a native Responses answer: ``output``).
_REQUIRED = {"chat": "choices", "completions": "choices", "embeddings": "data", "moderations": "results",
             "count_tokens": "input_tokens"}


def checked_answer(request: HubRequest, reply: Complete | Stream,
                   first: list[bytes]) -> tuple[Complete | Stream, str]:
    """The answer (a ``Complete`` with its parsed body, parsed once here) and what is wrong with it ("" when
    nothing is): a body that is not a JSON object with the surface's content, or a stream that ended without one
    event (its first event is checked to be a JSON object)."""
    if isinstance(reply, Stream):
        if not first:
            return reply, "a stream without a single event"
        try:
            event = orjson.loads(first[0])
        except orjson.JSONDecodeError:
            return reply, "a stream whose events are not JSON"
        return reply, "" if isinstance(event, dict) else "a stream whose events are not JSON objects"
    try:
        answer = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return reply, "a body that is not JSON"
    if not isinstance(answer, dict):
        return reply, "a body that is not a JSON object"
    field = "output" if reply.native and request.dialect == "responses" else _REQUIRED.get(request.surface, "")
    if field and field not in answer:
        return reply, f"a body without {field!r}"
    return Complete(reply.body, reply.native, reply.estimated, answer), ""


def estimated_count(request: HubRequest) -> Complete:
    """``{"input_tokens": N}`` estimated from the request: about four bytes of text per token, plus framing."""
    body = request.native if request.native is not None else request.payload
    return Complete(orjson.dumps({"input_tokens": estimate_tokens(body)}), native=True, estimated=True)


async def _first_events(reply: Stream, batches: Batches) -> list[bytes]:
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
