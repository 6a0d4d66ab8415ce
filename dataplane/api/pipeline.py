"""The one request path every dialect shares (shared/DESIGN.md §6), as the aiohttp side runs it.

``serve(request, dialect)``: read the body → gather the ``RequestFacts`` (the runtime read once, the clocks, the
random pick) → ``dialect.plan`` (pure: authenticate, validate, authorize, plan) → attribute → admit (the gate:
rate limits, budget reservation) → attempt (``dataplane.upstream.attempt``: adapters, failover) → respond
(JSON, or ``dataplane.api.streaming``) → settle (the gate) → record (``dataplane.record``). A ``Dialect`` says
only what differs between the APIs clients speak: how a request authenticates and becomes a plan, and how
answers and errors look. Nothing here logs, touches the disk or waits for the control plane, except the bounded
wait for a scope's first budget grant.

Consistency: the runtime is read after the body, and nothing between that read and ``admit`` awaits, so the
runtime a request is planned on and the limits it is admitted under are those of one snapshot (the holder
adopts both in one step on the loop). A request that has to wait for a first grant is planned again if a new
snapshot arrived meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import orjson
from aiohttp import web

from dataplane.api.appstate import STATE, AppState, tollway_headers
from dataplane.api.appstate import request_id as new_request_id
from dataplane.api.connection.edge import EdgeHandler, EdgeRefusal
from dataplane.api.connection.overload import OVERLOADED
from dataplane.api.connection.request_body import read_body
from dataplane.api.connection.whole_request import FastRequest
from dataplane.api.streaming import StreamFormat, stream_through
from dataplane.core.accounting import Outcome, Usage, charged_complete, cost_pico
from dataplane.core.attribution import Attribution, attribute
from dataplane.core.content import MessageAccumulator, completion_message, redact_request_payload
from dataplane.core.cost_bound import deployment_cost_bound
from dataplane.core.decide import Denial, RequestFacts, RoutePlan
from dataplane.core.gate import Admission, Refusal
from dataplane.core.limits.budget import WAITABLE
from dataplane.errors import NO_SNAPSHOT, ApiError, UpstreamFailure
from dataplane.record.trace_context import RequestTrace
from dataplane.snapshot.runtime import Deployment, Runtime
from dataplane.upstream.adapters import Complete
from dataplane.upstream.attempt import Answered, attempt
from tollway.money import micros_rounded, usd

FIRST_GRANT_WAIT_S = 5.0  # how long a request may wait for a first grant, or for room to be rebalanced to it


class Inbound(Protocol):
    """What the request path reads of a request: aiohttp's ``web.Request``, or the connection edge's
    ``FastRequest`` for one it read whole (``dataplane.api.connection.edge.FastPath``)."""

    @property
    def app(self) -> web.Application: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def protocol(self) -> object: ...


class Dialect(Protocol):
    """What differs between the API schemas the data plane accepts (OpenAI chat completions, Anthropic Messages):
    how a request authenticates and becomes a plan, and how answers and errors look. The request path between
    them (attribute, admit, attempt, settle, record) is one."""

    def authorization(self, request: Inbound) -> str | None: ...

    def plan(self, facts: RequestFacts) -> RoutePlan | ApiError: ...

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response: ...

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response: ...

    # ``complete`` and ``stream`` get the plan as served: ``plan.candidates[0]`` is the deployment that answered.
    def complete(self, body: bytes, answer: Any, plan: RoutePlan) -> bytes:
        """The client's body for an answer (``answer``: its JSON, parsed once by the attempt)."""
        ...

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat: ...


def _facts(request: Inbound, state: AppState, dialect: Dialect, runtime: Runtime, body: bytes, now: float
           ) -> RequestFacts:
    return RequestFacts(runtime, dialect.authorization(request), body, now, state.random.random(), state.health,
                        time.monotonic(), state.checked_keys)


async def serve(request: Inbound, dialect: Dialect) -> web.StreamResponse:
    """decide → attribute → admit → attempt → respond → settle → record, for any ``Dialect``; shed at once (503,
    ``Retry-After``) beyond the overload manager's limit (``connection.overload``; the edge sheds most such
    requests before they get here). (The connection edge, ``connection.edge``, has
    bounded the request's head already; the body is read here, by ``read_body``.)"""
    state = request.app[STATE]  # (read once a request, passed on)
    in_flight = state.edge.overload
    if isinstance(request.protocol, EdgeHandler):
        request.protocol.claim()  # its place, held by the edge, is the request path's now
    if in_flight.full():
        in_flight.shed += 1
        headers = tollway_headers(new_request_id(request), state.holder.version)
        headers["Retry-After"] = "1"
        return dialect.error(OVERLOADED, headers)
    in_flight.enter()
    try:
        return await _serve(request, state, dialect)
    finally:
        in_flight.count -= 1


async def _serve(request: Inbound, state: AppState, dialect: Dialect) -> web.StreamResponse:
    started = time.time()
    rid = new_request_id(request)
    holder = state.holder
    if holder.runtime is None:
        return dialect.error(NO_SNAPSHOT, tollway_headers(rid, ""))
    limit = state.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return dialect.error(_too_large(limit), tollway_headers(rid, holder.version))
    try:
        if isinstance(request, FastRequest):
            body = request.body  # read whole by the edge
        else:
            assert isinstance(request, web.Request)
            body = await read_body(request, limit, state.edge)
    except web.HTTPRequestEntityTooLarge:
        return dialect.error(_too_large(limit), tollway_headers(rid, holder.version))
    except EdgeRefusal as refused:  # a body too slow, or broken framing: the rest of the stream is not trusted
        answer = dialect.error(ApiError(refused.code, refused.message, "invalid_request_error", refused.error_code),
                               tollway_headers(rid, holder.version))
        answer.force_close()
        return answer

    runtime = holder.runtime
    tracer = state.records.tracer  # None unless tracing is on; then a trace only if sampled or the client sent one
    trace = tracer.begin(request.headers) if tracer is not None else None
    decided = _decide(request, state, dialect, rid, runtime, body, started, started, trace)
    if isinstance(decided, web.Response):
        return decided
    plan, attribution, admission = decided
    wait = state.lease_wait
    deadline = started + FIRST_GRANT_WAIT_S
    while isinstance(admission, Refusal) and admission.error.code in WAITABLE and wait is not None \
            and (left := deadline - time.time()) > 0:
        # The first request of a budget scope this data plane never held a grant of, or one whose room another
        # data plane holds: ask the control plane now rather than fail it, and again while the others yield
        # (bounded). Later requests of the scope are served from the local grant.
        await wait(left)
        if holder.runtime is runtime:
            admission = state.gate.admit(plan, attribution, time.time())
        else:  # a new snapshot arrived while waiting: plan again on it, so plan and limits stay one version
            runtime = holder.runtime
            decided = _decide(request, state, dialect, rid, runtime, body, started, time.time(), trace)
            if isinstance(decided, web.Response):
                return decided
            plan, attribution, admission = decided
    headers = tollway_headers(rid, runtime.version)
    if isinstance(admission, Refusal):
        state.records.refused(admission.error, rid, started, runtime.version, plan.key, plan.route.name, trace,
                              plan.request, attribution)
        return dialect.error(admission.error, {**headers, **admission.headers})
    return await _forward(request, state, dialect, rid, runtime, plan, attribution, admission, started, trace)


def _decide(request: Inbound, state: AppState, dialect: Dialect, rid: str, runtime: Runtime | None, body: bytes,
            started: float, now: float, trace: RequestTrace | None
            ) -> tuple[RoutePlan, Attribution, Admission | Refusal] | web.Response:
    """plan → attribute → admit, with no await in between; a refusal before admission is answered here."""
    assert runtime is not None  # a snapshot, once installed, is only ever replaced
    records = state.records
    headers = tollway_headers(rid, runtime.version)
    plan = dialect.plan(_facts(request, state, dialect, runtime, body, started))
    if isinstance(plan, ApiError):
        if isinstance(plan, Denial) and plan.request is not None:  # refused by policy: recorded as a decision
            records.refused(plan, rid, started, runtime.version, plan.key, plan.request.model, trace, plan.request)
        else:
            records.refused(plan, rid, started, runtime.version, trace=trace)
        return dialect.error(plan, headers)
    attribution = attribute(plan.key, plan.request.payload, request.headers)
    if isinstance(attribution, ApiError):
        records.refused(attribution, rid, started, runtime.version, plan.key, plan.route.name, trace)
        return dialect.error(attribution, headers)
    if plan.key.tenant.content.redact_before_provider:
        # Before admission: the budget's worst case is bounded from what the provider will receive.
        plan = replace(plan, request=replace(plan.request, payload=redact_request_payload(plan.request.payload)))
    return plan, attribution, state.gate.admit(plan, attribution, now)


async def _forward(request: Inbound, state: AppState, dialect: Dialect, rid: str, runtime: Runtime, plan: RoutePlan,
                   attribution: Attribution, admission: Admission, started: float,
                   trace: RequestTrace | None) -> web.StreamResponse:
    """attempt → respond → settle → record, for an admitted request; every path ends in settle or release."""
    gate, records, health = state.gate, state.records, state.health
    settled = False
    try:
        result = await attempt(plan, state.adapters, state.alarms, health, state.retry_budget, trace)
        if trace is not None:
            trace.reason = result.reason
        dep = result.deployment
        headers = tollway_headers(rid, runtime.version, dep.provider.name if dep else "", dep.name if dep else "",
                                  result.attempts)
        headers["x-tollway-route-reason"] = result.reason
        headers.update(admission.headers)
        if not isinstance(result, Answered):
            failed = dialect.failure(result.failure, headers)
            if result.attempts:
                settled = True
                _settle(state, admission, outcome(rid, runtime.version, plan, dep, result.attempts, failed.status,
                                                  None, started, None, attribution=attribution,
                                                  upstream_s=time.time() - result.sent_at), trace=trace)
            return failed
        if result.deployment is not plan.candidates[0]:
            # The dialect gets the plan as served: after a failover its first candidate is the deployment that
            # answered, which is what a Responses API id must name for a follow-up to reach the stored response.
            plan = replace(plan, candidates=(result.deployment,))
        if isinstance(result.reply, Complete):
            settled = True
            return _complete(request, state, dialect, rid, runtime.version, plan, result, result.reply, headers,
                             started, admission, trace)
        if trace is not None and trace.sampled and result.rest is not None:  # noting finish reasons, model
            result = replace(result, rest=trace.noting(result.first_events, result.rest))
        accumulator = MessageAccumulator() if records.keeps_content(plan.key, trace) else None
        # The route's total timeout bounds the whole stream, from the first attempt on.
        left = plan.route.failover.total_timeout_s - (time.time() - result.sent_at)
        deadline = state.alarms.time() + max(left, 0.0)
        assert isinstance(request, FastRequest | web.Request)
        resp, streamed = await stream_through(request, result, headers, dialect.stream(plan, accumulator), started,
                                              deadline, state.alarms)
        settled = True
        if streamed.failure is not None:
            health.failed(result.deployment, streamed.failure.kind, time.monotonic(), streamed.failure.message)
        _settle(state, admission, outcome(rid, runtime.version, plan, result.deployment, result.attempts, 200,
                                          streamed.charged_usage(plan.request), started,
                                          streamed.first_byte_s, streamed.aborted,
                                          attribution=attribution,
                                          upstream_s=(streamed.upstream_end or time.time()) - result.sent_at),
                accumulator.message() if accumulator is not None else None, trace)
        return resp
    finally:
        if not settled:  # never reached an upstream, or cancelled on the way: give back what admission took
            gate.release(admission, time.time())


def _settle(state: AppState, admission: Admission, done: Outcome,
            response: Mapping[str, Any] | None = None, trace: RequestTrace | None = None) -> None:
    state.gate.settle(done, admission)
    state.records.served(done, response, trace)


def _complete(request: Inbound, state: AppState, dialect: Dialect, rid: str, version: str, plan: RoutePlan,
              result: Answered, reply: Complete, headers: dict[str, str], started: float, admission: Admission,
              trace: RequestTrace | None) -> web.StreamResponse:
    # The upstream body passes through unchanged (OpenAI clients); it is parsed only to read the usage (and, for
    # tenants whose log keeps content, the answer).
    upstream_s = time.time() - result.sent_at
    parsed: Any = reply.parsed  # checked (a JSON object) and parsed once by the attempt
    if parsed is None:
        try:
            parsed = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            parsed = None
    # Counting tokens costs nothing; everything else is charged what the upstream reported (or an estimate).
    usage = None if plan.request.surface == "count_tokens" else \
        charged_complete(parsed, len(reply.body), plan.request)
    done = outcome(rid, version, plan, result.deployment, result.attempts, 200, usage, started, time.time() - started,
                   attribution=admission.attribution, upstream_s=upstream_s)
    headers["x-tollway-cost-usd-micros"] = str(micros_rounded(done.cost_pico))  # for display
    headers["x-tollway-cost-usd"] = usd(done.cost_pico)  # exact
    if plan.request.surface == "count_tokens":
        headers["x-tollway-token-count"] = "estimate" if reply.estimated else "exact"
    if trace is not None:
        trace.note_answer(parsed)
    response = completion_message(parsed) if parsed is not None and state.records.keeps_content(plan.key, trace) \
        else None
    _settle(state, admission, done, response, trace)
    body = dialect.complete(reply.body, parsed, plan)
    if isinstance(request, FastRequest):  # read whole by the edge: written straight to its connection
        return request.send_answer(headers, body)
    return web.Response(body=body, headers=headers, content_type="application/json")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body exceeds {limit} bytes", "invalid_request_error", "request_too_large")


def outcome(request_id: str, snapshot: str, plan: RoutePlan, deployment: Deployment | None, attempts: int, status: int,
            usage: Usage | None, started: float, first_byte_s: float | None, aborted: bool = False,
            attribution: Attribution | None = None, upstream_s: float | None = None) -> Outcome:
    cost = cost_pico(deployment.prices, usage) if deployment is not None and usage is not None else 0
    if deployment is not None and usage is not None and usage.is_estimated:
        # An estimate never charges more than the request's bound on this deployment (what was reserved covers it).
        cost = min(cost, deployment_cost_bound(plan.request.payload, deployment, plan.request.surface))
    return Outcome(request_id=request_id, snapshot=snapshot, plan=plan, deployment=deployment, attempts=attempts,
                   status=status, usage=usage, cost_pico=cost, started=started, first_byte_s=first_byte_s,
                   duration_s=time.time() - started, aborted=aborted, attribution=attribution,
                   upstream_s=upstream_s)
