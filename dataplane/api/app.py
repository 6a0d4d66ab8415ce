"""The data plane's HTTP server: the OpenAI API over the installed snapshot.

``create_app(settings, holder)`` wires everything; state lives on the application under typed ``AppKey``s, the
upstream ClientSession is created and closed by a ``cleanup_ctx``. Handlers are thin: read the runtime once,
``decide`` (pure), ``admit`` (the gate), ``attempt`` (adapters, failover), answer, ``settle``. Nothing on the
request path logs, touches the disk or waits for the control plane.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import orjson
from aiohttp import web

from dataplane.api.anthropic import ANTHROPIC
from dataplane.core.accounting import Gate, OpenGate, Outcome
from dataplane.core.attribution import attribute
from dataplane.core.budget import LEASE_PENDING
from dataplane.core.content import MessageAccumulator, completion_message, redact_request_payload
from dataplane.core.decide import RoutePlan, authenticate, decide
from dataplane.core.health import Health, RetryBudget, usable_deployments
from dataplane.core.limits_gate import Admission, Refusal
from dataplane.errors import NO_SNAPSHOT, ApiError, UpstreamFailure
from dataplane.record.metrics import METRICS, DataPlaneMetrics, metrics_handler
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.snapshot.runtime import Runtime
from dataplane.upstream.adapters import Adapter, Complete
from dataplane.upstream.adapters.anthropic import AnthropicAdapter
from dataplane.upstream.adapters.azure import AzureAdapter
from dataplane.upstream.adapters.mock import MockAdapter
from dataplane.upstream.adapters.openai import OpenAIAdapter
from dataplane.upstream.attempt import (
    Answered,
    OpenAIStream,
    StreamFormat,
    attempt,
    complete_charged_usage,
    failure_response,
    outcome,
    stream_through,
)
from dataplane.upstream.client import UpstreamClient

SETTINGS = web.AppKey("settings", DataPlaneSettings)
HOLDER = web.AppKey("holder", SnapshotHolder)
GATE = web.AppKey("gate", Gate)
ADAPTERS = web.AppKey("adapters", Mapping[str, Adapter])
RANDOM = web.AppKey("random", random.Random)
CHECKED_KEYS = web.AppKey("checked_keys", set[bytes])  # hashes of keys whose checksum was verified
RECORDS = web.AppKey("records", Records)
HEALTH = web.AppKey("health", Health)
RETRY_BUDGET = web.AppKey("retry_budget", RetryBudget)
# Waits for the control plane's next lease answer (bounded); None without a lease client.
LeaseWait = Callable[[float], Awaitable[None]]
LEASE_WAIT: web.AppKey[LeaseWait | None] = web.AppKey("lease_wait")
FIRST_GRANT_WAIT_S = 2.0

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def request_id(request: web.Request) -> str:
    """Echo the client's ``x-request-id`` when it is short and plain, so it can be correlated; else a new one."""
    sent = request.headers.get("x-request-id")
    if sent is not None and _REQUEST_ID_RE.match(sent):
        return sent
    return "req_" + os.urandom(12).hex()


def tollway_headers(rid: str, snapshot: str, provider: str = "", deployment: str = "",
                    attempts: int = 0) -> dict[str, str]:
    return {"x-request-id": rid, "x-tollway-snapshot": snapshot, "x-tollway-provider": provider,
            "x-tollway-deployment": deployment, "x-tollway-attempts": str(attempts)}


def error_response(err: ApiError, headers: dict[str, str]) -> web.Response:
    return web.Response(status=err.status, body=err.body(), headers=headers, content_type="application/json")


class Dialect(Protocol):
    """What differs between the API schemas the data plane accepts (OpenAI chat completions, Anthropic Messages):
    how a request authenticates and becomes a plan, and how answers and errors look. The request path between
    them (attribute, admit, attempt, settle, record) is one."""

    def authorization(self, request: web.Request) -> str | None: ...

    def plan(self, runtime: Runtime, authorization: str | None, body: bytes, now: float, pick: float,
             checked: set[bytes], health: Health, mono: float) -> RoutePlan | ApiError: ...

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response: ...

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response: ...

    def complete(self, body: bytes, plan: RoutePlan) -> bytes: ...

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat: ...


class OpenAIDialect:
    """``POST /v1/chat/completions``: answers pass through unchanged."""

    def authorization(self, request: web.Request) -> str | None:
        return request.headers.get("Authorization")

    def plan(self, runtime: Runtime, authorization: str | None, body: bytes, now: float, pick: float,
             checked: set[bytes], health: Health, mono: float) -> RoutePlan | ApiError:
        return decide(runtime, authorization, body, now, pick, checked, health, mono)

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response:
        return error_response(err, headers)

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
        return failure_response(failure, headers)

    def complete(self, body: bytes, plan: RoutePlan) -> bytes:
        return body

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat:
        return OpenAIStream(plan.request.include_usage, accumulator)


OPENAI = OpenAIDialect()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve_chat(request, OPENAI)


async def serve_chat(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    """decide → attribute → admit → attempt → respond → settle → record, for any ``Dialect``."""
    app = request.app
    started = time.time()
    rid = request_id(request)
    runtime = app[HOLDER].runtime
    if runtime is None:
        return dialect.error(NO_SNAPSHOT, tollway_headers(rid, ""))
    headers = tollway_headers(rid, runtime.version)
    limit = app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return dialect.error(_too_large(limit), headers)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return dialect.error(_too_large(limit), headers)

    records = app[RECORDS]
    health = app[HEALTH]
    plan = dialect.plan(runtime, dialect.authorization(request), body, started, app[RANDOM].random(),
                        app[CHECKED_KEYS], health, time.monotonic())
    if isinstance(plan, ApiError):
        records.refused(plan, rid, started, runtime.version)
        return dialect.error(plan, headers)
    attribution = attribute(plan.key, plan.request.payload, request.headers)
    if isinstance(attribution, ApiError):
        records.refused(attribution, rid, started, runtime.version, plan.key, plan.route.name)
        return dialect.error(attribution, headers)
    if plan.key.tenant.content.redact_before_provider:
        # Before admission: the budget's worst case is bounded from what the provider will receive.
        plan = replace(plan, request=replace(plan.request, payload=redact_request_payload(plan.request.payload)))
    gate = app[GATE]
    admission = gate.admit(plan, attribution, started)
    wait = app[LEASE_WAIT]
    if isinstance(admission, Refusal) and admission.error.code == LEASE_PENDING and wait is not None:
        # The first request of a budget scope this data plane never held a grant of: ask the control plane
        # now rather than fail it. Later requests of the scope are served from the local grant.
        await wait(FIRST_GRANT_WAIT_S)
        admission = gate.admit(plan, attribution, time.time())
    if isinstance(admission, Refusal):
        records.refused(admission.error, rid, started, runtime.version, plan.key, plan.route.name)
        return dialect.error(admission.error, {**headers, **admission.headers})

    settled = False
    try:
        result = await attempt(plan, app[ADAPTERS], health, app[RETRY_BUDGET])
        dep = result.deployment
        headers = tollway_headers(rid, runtime.version, dep.provider.name if dep else "", dep.name if dep else "",
                                  result.attempts)
        headers["x-tollway-route-reason"] = result.reason
        headers.update(admission.headers)
        if not isinstance(result, Answered):
            failed = dialect.failure(result.failure, headers)
            if result.attempts:
                settled = True
                _settle(app, admission, outcome(rid, runtime.version, plan, dep, result.attempts, failed.status,
                                                None, started, None, attribution=attribution,
                                                upstream_s=time.time() - result.sent_at))
            return failed
        if isinstance(result.reply, Complete):
            settled = True
            return _complete(app, dialect, rid, runtime.version, plan, result, result.reply, headers, started,
                             admission)
        accumulator = MessageAccumulator() if records.keeps_content(plan.key) else None
        resp, streamed = await stream_through(request, result, headers, dialect.stream(plan, accumulator), started)
        settled = True
        if streamed.failure is not None:
            health.failed(result.deployment, streamed.failure.kind, time.monotonic())
        _settle(app, admission, outcome(rid, runtime.version, plan, result.deployment, result.attempts, 200,
                                        streamed.charged_usage(plan.request.estimated_prompt_tokens), started,
                                        streamed.first_byte_s, streamed.aborted,
                                        attribution=attribution,
                                        upstream_s=(streamed.upstream_end or time.time()) - result.sent_at),
                accumulator.message() if accumulator is not None else None)
        return resp
    finally:
        if not settled:  # never reached an upstream, or cancelled on the way: give back what admission took
            gate.release(admission, time.time())


def _settle(app: web.Application, admission: Admission, done: Outcome,
            response: Mapping[str, Any] | None = None) -> None:
    app[GATE].settle(done, admission)
    app[RECORDS].served(done, response)


def _complete(app: web.Application, dialect: Dialect, rid: str, version: str, plan: RoutePlan, result: Answered,
              reply: Complete, headers: dict[str, str], started: float, admission: Admission) -> web.Response:
    # The upstream body passes through unchanged (OpenAI clients); it is parsed only to read the usage (and, for
    # tenants whose log keeps content, the answer).
    upstream_s = time.time() - result.sent_at
    try:
        parsed: Any = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        parsed = None
    usage = complete_charged_usage(parsed, len(reply.body), plan.request.estimated_prompt_tokens)
    done = outcome(rid, version, plan, result.deployment, result.attempts, 200, usage, started, time.time() - started,
                   attribution=admission.attribution, upstream_s=upstream_s)
    headers["x-tollway-cost-usd-micros"] = str(done.cost_micros)
    response = completion_message(parsed) if parsed is not None and app[RECORDS].keeps_content(plan.key) else None
    _settle(app, admission, done, response)
    return web.Response(body=dialect.complete(reply.body, plan), headers=headers, content_type="application/json")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body exceeds {limit} bytes", "invalid_request_error", "request_too_large")


async def list_models(request: web.Request) -> web.Response:
    rid = request_id(request)
    runtime = request.app[HOLDER].runtime
    if runtime is None:
        return error_response(NO_SNAPSHOT, tollway_headers(rid, ""))
    headers = tollway_headers(rid, runtime.version)
    key = authenticate(runtime, request.headers.get("Authorization"), time.time(), request.app[CHECKED_KEYS])
    if isinstance(key, ApiError):
        return error_response(key, headers)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "tollway"} for name in key.models]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), headers=headers,
                        content_type="application/json")


async def messages(request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages``: the Anthropic Messages API over the same request path."""
    return await serve_chat(request, ANTHROPIC)


async def health_view(request: web.Request) -> web.Response:
    """``GET /healthz/deployments``: the health of every deployment a tenant may use here (no secrets: names
    and states only, like ``/metrics``)."""
    runtime = request.app[HOLDER].runtime
    deployments = usable_deployments(runtime) if runtime is not None else []
    views = request.app[HEALTH].view(deployments, time.monotonic())
    return web.Response(body=orjson.dumps({"deployments": [
        {"deployment": v.deployment, "provider": v.provider, "state": v.state,
         "consecutive_failures": v.consecutive_failures, "ejections": v.ejections,
         "ejected_for_s": round(v.ejected_for_s, 3), "ttfb_ewma_ms": round(v.ttfb_ewma_s * 1000, 3)}
        for v in views]}), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    version = request.app[HOLDER].version
    if not version:
        return web.Response(status=503, body=b'{"status":"no snapshot"}', content_type="application/json")
    return web.Response(body=orjson.dumps({"status": "ready", "version": version}), content_type="application/json")


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    # One lean client for all upstreams: keep-alive connections are reused across requests and tenants.
    upstream = UpstreamClient()
    adapters: dict[str, Adapter] = {
        "openai": OpenAIAdapter(upstream), "azure": AzureAdapter(upstream),
        "anthropic": AnthropicAdapter(upstream), "mock": MockAdapter(),
    }
    app[ADAPTERS] = adapters
    try:
        yield
    finally:
        await upstream.close()


def create_app(settings: DataPlaneSettings, holder: SnapshotHolder, gate: Gate | None = None,
               records: Records | None = None, metrics: DataPlaneMetrics | None = None,
               lease_wait: LeaseWait | None = None, health: Health | None = None,
               retry_budget: RetryBudget | None = None) -> web.Application:
    """The aiohttp application. ``gate`` is the budget/rate-limit layer (by default everything is admitted);
    ``records`` the record step (by default: the request metrics of ``metrics`` only); ``health`` the
    deployments' health (by default a fresh one; the data plane shares its own with the active checker);
    ``retry_budget`` caps failover attempts (by default 20 % of requests, at least 3 a second)."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[HOLDER] = holder
    app[GATE] = gate if gate is not None else OpenGate()
    app[LEASE_WAIT] = lease_wait
    app[METRICS] = metrics if metrics is not None else DataPlaneMetrics(holder, settings.region)
    app[RECORDS] = records if records is not None else Records(app[METRICS].requests)
    app[RANDOM] = random.Random()
    app[CHECKED_KEYS] = set()
    app[HEALTH] = health if health is not None else Health()
    app[RETRY_BUDGET] = retry_budget if retry_budget is not None else RetryBudget()
    app[METRICS].watch_health(app[HEALTH])
    app.cleanup_ctx.append(_upstream_client)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/healthz/deployments", health_view)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app
