"""The data plane's HTTP server: the routes, and the application's state wired once.

``create_app(settings, holder, ...)`` sets the typed state (``dataplane.api.appstate``) and registers the
handlers: one module per inbound dialect (``openai``: chat completions and models; ``anthropic``: Messages),
both running the one request path of ``pipeline``, plus the operator endpoints of ``ops`` and ``/metrics``. The
upstream client is created and closed by a ``cleanup_ctx``. Nothing on the request path logs, touches the disk
or waits for the control plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from dataplane.api import anthropic, fallback, openai, ops, responses
from dataplane.api.appstate import STATE, AppState, LeaseWait
from dataplane.api.connection.edge import Edge
from dataplane.api.connection.whole_request import INFERENCE
from dataplane.api.pipeline import Inbound
from dataplane.core.gate import Gate, OpenGate
from dataplane.core.health import Health, RetryBudget
from dataplane.record.metrics import METRICS, DataPlaneMetrics, metrics_handler
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.upstream.adapters import Adapter
from dataplane.upstream.adapters.anthropic import AnthropicAdapter
from dataplane.upstream.adapters.azure import AzureAdapter
from dataplane.upstream.adapters.bedrock import BedrockAdapter
from dataplane.upstream.adapters.google import GeminiAdapter, VertexAdapter
from dataplane.upstream.adapters.mock.adapter import MockAdapter
from dataplane.upstream.adapters.openai import OpenAIAdapter
from dataplane.upstream.alarms import Alarms
from dataplane.upstream.client import UpstreamClient


async def _upstream_client(app: web.Application) -> AsyncIterator[None]:
    # One lean client for all upstreams: keep-alive connections are reused across requests and tenants.
    # As many idle connections per upstream as requests may be in flight: a burst's connections are kept for the
    # next one instead of being closed and opened again (at 256 a 512-connection load opened 17,702 for 104k).
    state = app[STATE]
    state.alarms = Alarms(asyncio.get_running_loop())
    upstream = UpstreamClient(max_idle_per_origin=state.settings.max_in_flight, busy=state.edge.overload.busy,
                              alarms=state.alarms)
    vertex = VertexAdapter(upstream)
    adapters: dict[str, Adapter] = {
        "openai": OpenAIAdapter(upstream), "azure": AzureAdapter(upstream),
        "anthropic": AnthropicAdapter(upstream), "bedrock": BedrockAdapter(upstream), "mock": MockAdapter(),
        "gemini": GeminiAdapter(upstream), "vertex": vertex,
    }
    state.adapters = adapters
    try:
        yield
    finally:
        await vertex.aclose()  # token refreshes in flight
        await upstream.close()


# The inference routes: each runs ``pipeline.serve``. aiohttp routes them; the connection edge sheds them early and
# serves the whole, non-streamed ones itself (``dataplane.api.connection.whole_request``), with the same handlers.
INFERENCE_ROUTES: dict[str, Callable[[Inbound], Awaitable[web.StreamResponse]]] = {
    "/v1/chat/completions": openai.chat_completions, "/v1/responses": responses.create,
    "/v1/embeddings": openai.embeddings, "/v1/completions": openai.completions,
    "/v1/moderations": openai.moderations, "/v1/messages": anthropic.messages,
    "/v1/messages/count_tokens": anthropic.count_tokens,
}


async def _overload_monitor(app: web.Application) -> AsyncIterator[None]:
    overload = app[STATE].edge.overload
    overload.start()
    try:
        yield
    finally:
        overload.stop()


def create_app(settings: DataPlaneSettings, holder: SnapshotHolder, gate: Gate | None = None,
               records: Records | None = None, metrics: DataPlaneMetrics | None = None,
               lease_wait: LeaseWait | None = None, health: Health | None = None,
               retry_budget: RetryBudget | None = None, edge: Edge | None = None) -> web.Application:
    """The aiohttp application. ``gate`` is the budget/rate-limit layer (by default everything is admitted);
    ``records`` the record step (by default: the request metrics of ``metrics`` only); ``health`` the
    deployments' health (by default a fresh one; the data plane shares its own with the active checker);
    ``retry_budget`` caps failover attempts (by default 20 % of requests, at least 3 a second); ``edge`` the
    connection limits the server enforces and the request path's body rate (by default from ``settings``)."""
    middlewares = [fallback.cors_middleware(settings.cors_origins)] if settings.cors_origins else []
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[METRICS] = metrics if metrics is not None else DataPlaneMetrics(holder, settings.region)
    state = app[STATE] = AppState(
        settings, holder, gate if gate is not None else OpenGate(),
        records if records is not None else Records(app[METRICS].requests),
        health if health is not None else Health(),
        retry_budget if retry_budget is not None else RetryBudget(),  # caps failover attempts
        edge if edge is not None else Edge.of(settings), lease_wait)
    app[METRICS].watch_edge(state.edge.events, state.edge.overload)
    app.cleanup_ctx.append(_overload_monitor)
    # Response ids are authenticated with a secret the region's data planes share, so any of them routes a
    # follow-up (previous_response_id) to the deployment holding the response.
    app[responses.RESPONSES] = responses.ResponsesDialect(responses.ResponseIds(settings.control_plane_token))
    app[METRICS].watch_health(state.health)
    app.cleanup_ctx.append(_upstream_client)
    # Every route that can reach an upstream runs ``pipeline.serve`` (tests/dataplane/test_route_policy.py
    # walks this table and fails for one that bypasses the policy).
    for path, handler in INFERENCE_ROUTES.items():
        app.router.add_post(path, handler)
    app[INFERENCE] = {path.encode(): handler for path, handler in INFERENCE_ROUTES.items()}
    app.router.add_get("/v1/models", openai.list_models)
    app.router.add_get("/v1/models/{model}", openai.retrieve_model)
    app.router.add_get("/healthz/deployments", ops.health_view)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/readyz", ops.readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_route("*", fallback.CATCH_ALL, fallback.not_found)  # last: what no route above answers
    return app
