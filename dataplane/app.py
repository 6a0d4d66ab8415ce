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
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from dataplane.accounting import Gate, OpenGate, Outcome, cost_micros
from dataplane.adapters import Adapter, Complete
from dataplane.adapters.anthropic import AnthropicAdapter
from dataplane.adapters.azure import AzureAdapter
from dataplane.adapters.mock import MockAdapter
from dataplane.adapters.openai import OpenAIAdapter
from dataplane.content import completion_message, redact_request_payload
from dataplane.errors import NO_SNAPSHOT, ApiError
from dataplane.limits_gate import Admission, Refusal
from dataplane.metrics import METRICS, DataPlaneMetrics, metrics_handler
from dataplane.proxy import Answered, attempt, complete_usage, failure_response, outcome, stream_through
from dataplane.records import Records
from dataplane.request import Plan, authenticate, decide
from dataplane.settings import DataPlaneSettings
from dataplane.state import SnapshotHolder
from dataplane.tags import attribute
from dataplane.upstream_http import UpstreamClient

SETTINGS = web.AppKey("settings", DataPlaneSettings)
HOLDER = web.AppKey("holder", SnapshotHolder)
GATE = web.AppKey("gate", Gate)
ADAPTERS = web.AppKey("adapters", Mapping[str, Adapter])
RANDOM = web.AppKey("random", random.Random)
CHECKED_KEYS = web.AppKey("checked_keys", set[bytes])  # hashes of keys whose checksum was verified
RECORDS = web.AppKey("records", Records)
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


async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    started = time.time()
    rid = request_id(request)
    runtime = app[HOLDER].runtime
    if runtime is None:
        return error_response(NO_SNAPSHOT, tollway_headers(rid, ""))
    headers = tollway_headers(rid, runtime.version)
    limit = app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return error_response(_too_large(limit), headers)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(_too_large(limit), headers)

    records = app[RECORDS]
    plan = decide(runtime, request.headers.get("Authorization"), body, started, app[RANDOM].random(),
                  app[CHECKED_KEYS])
    if isinstance(plan, ApiError):
        records.refused(plan, rid, started, runtime.version)
        return error_response(plan, headers)
    attribution = attribute(plan.key, plan.request.payload, request.headers)
    if isinstance(attribution, ApiError):
        records.refused(attribution, rid, started, runtime.version, plan.key, plan.route.name)
        return error_response(attribution, headers)
    if plan.key.tenant.content.redact_before_provider:
        # Before admission: the budget's worst case is bounded from what the provider will receive.
        plan = replace(plan, request=replace(plan.request, payload=redact_request_payload(plan.request.payload)))
    gate = app[GATE]
    admission = gate.admit(plan, attribution, started)
    wait = app[LEASE_WAIT]
    if isinstance(admission, Refusal) and admission.error.code == "budget_lease_pending" and wait is not None:
        # The first request of a budget scope this data plane never held a grant of: ask the control plane
        # now rather than fail it. Later requests of the scope are served from the local grant.
        await wait(FIRST_GRANT_WAIT_S)
        admission = gate.admit(plan, attribution, time.time())
    if isinstance(admission, Refusal):
        records.refused(admission.error, rid, started, runtime.version, plan.key, plan.route.name)
        return error_response(admission.error, {**headers, **admission.headers})

    settled = False
    try:
        result = await attempt(plan, app[ADAPTERS])
        dep = result.deployment
        headers = tollway_headers(rid, runtime.version, dep.provider.name if dep else "", dep.name if dep else "",
                                  result.attempts)
        headers.update(admission.headers)
        if not isinstance(result, Answered):
            failed = failure_response(result.failure, headers)
            if result.attempts:
                settled = True
                _settle(app, admission, outcome(rid, runtime.version, plan, dep, result.attempts, failed.status,
                                                None, started, None, attribution=attribution))
            return failed
        if isinstance(result.reply, Complete):
            settled = True
            return _complete(app, rid, runtime.version, plan, result, result.reply, headers, started, admission)
        resp, streamed = await stream_through(request, result, headers, plan.request.include_usage, started)
        settled = True
        _settle(app, admission, outcome(rid, runtime.version, plan, result.deployment, result.attempts, 200,
                                        streamed.usage, started, streamed.first_byte_s, streamed.aborted,
                                        attribution=attribution))
        return resp
    finally:
        if not settled:  # never reached an upstream, or cancelled on the way: give back what admission took
            gate.release(admission, time.time())


def _settle(app: web.Application, admission: Admission, done: Outcome,
            response: Mapping[str, Any] | None = None) -> None:
    app[GATE].settle(done, admission)
    app[RECORDS].served(done, response)


def _complete(app: web.Application, rid: str, version: str, plan: Plan, result: Answered, reply: Complete,
              headers: dict[str, str], started: float, admission: Admission) -> web.Response:
    # The upstream body passes through unchanged; it is parsed only to read the usage (and, for tenants whose
    # log keeps content, the answer).
    usage = complete_usage(reply.body)
    if usage is not None:
        headers["x-tollway-cost-usd-micros"] = str(cost_micros(result.deployment.prices, usage))
    response = completion_message(orjson.loads(reply.body)) if app[RECORDS].keeps_content(plan.key) else None
    _settle(app, admission, outcome(rid, version, plan, result.deployment, result.attempts, 200, usage, started,
                                    time.time() - started, attribution=admission.attribution), response)
    return web.Response(body=reply.body, headers=headers, content_type="application/json")


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


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    version = request.app[HOLDER].version
    if not version:
        return web.Response(status=503, body=b'{"status":"no snapshot"}', content_type="application/json")
    return web.Response(body=orjson.dumps({"status": "ready", "version": version}), content_type="application/json")


async def _upstream_session(app: web.Application) -> AsyncIterator[None]:
    # One session for all upstreams: keep-alive connections are reused across requests and tenants.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
    # OpenAI-compatible upstreams carry most traffic: they get the lean client, the others aiohttp's.
    upstream = UpstreamClient()
    try:
        async with aiohttp.ClientSession(connector=connector, auto_decompress=True) as session:
            adapters: dict[str, Adapter] = {
                "openai": OpenAIAdapter(upstream), "azure": AzureAdapter(session),
                "anthropic": AnthropicAdapter(session), "mock": MockAdapter(),
            }
            app[ADAPTERS] = adapters
            yield
    finally:
        await upstream.close()


def create_app(settings: DataPlaneSettings, holder: SnapshotHolder, gate: Gate | None = None,
               records: Records | None = None, metrics: DataPlaneMetrics | None = None,
               lease_wait: LeaseWait | None = None) -> web.Application:
    """The aiohttp application. ``gate`` is the budget/rate-limit layer (by default everything is admitted);
    ``records`` the record step (by default: the request metrics of ``metrics`` only)."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[HOLDER] = holder
    app[GATE] = gate if gate is not None else OpenGate()
    app[LEASE_WAIT] = lease_wait
    app[METRICS] = metrics if metrics is not None else DataPlaneMetrics(holder, settings.region)
    app[RECORDS] = records if records is not None else Records(app[METRICS].requests)
    app[RANDOM] = random.Random()
    app[CHECKED_KEYS] = set()
    app.cleanup_ctx.append(_upstream_session)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app
