"""The data plane's Prometheus metrics, served at ``GET /metrics`` on its HTTP port.

``RequestMetrics.observe(outcome)`` records one settled request (``Gate.settle`` calls it, see ``MeteredGate``);
``refused(error)`` one refused before any upstream. Both cost a few attribute updates: the label children of a
route, a (route, status) pair and a provider are resolved the first time they are seen and memoized in plain
dicts keyed by the names the snapshot defines, so the hot path formats no strings and takes no locks.

Labels are route, deployment-provider and status/type names only: policy-defined names or closed sets, never
prompts, keys or client-supplied text.

State read at scrape time instead of on the request path: snapshot version (``tollway_snapshot_info``) and age,
usage backlog (``UsageShipper.backlog``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

from aiohttp import web

from dataplane.core.accounting import Outcome
from dataplane.core.health import Health, usable_deployments
from dataplane.errors import ApiError
from dataplane.snapshot.holder import SnapshotHolder
from tollway.money import PICO_PER_USD
from tollway.prometheus import CounterChild, Registry

# What the connection edge (``dataplane.api.connection.edge``) refuses, and requests shed at the in-flight limit.
EdgeEvent = Literal["header_timeout", "headers_too_large", "malformed_request", "client_connection_limit",
                    "body_timeout", "shed"]
EDGE_EVENTS: tuple[EdgeEvent, ...] = ("header_timeout", "headers_too_large", "malformed_request",
                                      "client_connection_limit", "body_timeout", "shed")


class EdgeCounts(Protocol):
    @property
    def counts(self) -> Mapping[EdgeEvent, int]: ...


class InFlightCount(Protocol):
    count: int
    shed: int
    limit: int
    lag_s: float
    utilization: float


class _RouteChildren:
    __slots__ = ("cached_input", "cost", "duration", "input", "output", "ttfb")

    def __init__(self, m: RequestMetrics, route: str) -> None:
        self.duration = m.duration.labels(route)
        self.ttfb = m.ttfb.labels(route)
        self.input = m.tokens.labels(route, "input")
        self.cached_input = m.tokens.labels(route, "cached_input")
        self.output = m.tokens.labels(route, "output")
        self.cost = m.cost.labels(route)


class _ProviderChildren:
    __slots__ = ("aborted", "rate_limited", "refused", "server_error", "timeout", "upstream")

    def __init__(self, m: RequestMetrics, provider: str) -> None:
        self.upstream = m.upstream.labels(provider)
        self.server_error = m.upstream_errors.labels(provider, "5xx")
        self.timeout = m.upstream_errors.labels(provider, "timeout")
        self.rate_limited = m.upstream_errors.labels(provider, "429")
        self.refused = m.upstream_errors.labels(provider, "4xx")
        self.aborted = m.upstream_errors.labels(provider, "aborted")


class RequestMetrics:
    """Per-request counters and histograms. Task-safe on one event loop (no locks by design)."""

    def __init__(self, registry: Registry) -> None:
        self.requests = registry.counter(
            "tollway_requests_total", "Requests that reached an upstream, by route and final status",
            ["route", "status"])
        self.refusals = registry.counter(
            "tollway_refusals_total", "Requests refused before any upstream, by status, error type and code "
            "(e.g. rate_limit_exceeded, tenant_budget_exceeded, budget_rebalancing; the type when there is none)",
            ["status", "type", "code"])
        self.duration = registry.histogram(
            "tollway_request_duration_seconds", "Total request latency as the client sees it", ["route"])
        self.ttfb = registry.histogram(
            "tollway_time_to_first_byte_seconds", "Time to the first byte of the answer", ["route"])
        self.upstream = registry.histogram(
            "tollway_upstream_duration_seconds", "Time spent on the upstream attempts of a request", ["provider"])
        self.tokens = registry.counter(
            "tollway_tokens_total", "Tokens by route and direction (input, cached_input, output)",
            ["route", "direction"])
        self.cost = registry.counter("tollway_cost_usd_total", "Cost in USD (exact in the usage records; a float "
                                     "here)", ["route"])
        self.upstream_errors = registry.counter(
            "tollway_upstream_errors_total", "Failed upstream answers by provider and kind "
            "(5xx, timeout, 429, 4xx, aborted stream)", ["provider", "kind"])
        self._routes: dict[str, _RouteChildren] = {}
        self._statuses: dict[tuple[str, int], CounterChild] = {}
        self._providers: dict[str, _ProviderChildren] = {}
        self._refusals: dict[tuple[int, str, str | None], CounterChild] = {}

    def observe(self, outcome: Outcome) -> None:
        """Record one request that reached an upstream (called from ``Gate.settle``)."""
        route = outcome.plan.route.name
        status = outcome.status
        r = self._routes.get(route)
        if r is None:
            r = self._routes[route] = _RouteChildren(self, route)
        c = self._statuses.get((route, status))
        if c is None:
            c = self._statuses[(route, status)] = self.requests.labels(route, str(status))
        c.value += 1
        r.duration.observe(outcome.duration_s)
        if outcome.first_byte_s is not None:
            r.ttfb.observe(outcome.first_byte_s)
        usage = outcome.usage
        if usage is not None:
            r.input.value += usage.prompt_tokens - usage.cached_tokens
            r.cached_input.value += usage.cached_tokens
            r.output.value += usage.completion_tokens
        r.cost.value += outcome.cost_pico / PICO_PER_USD
        dep = outcome.deployment
        if dep is None:
            return
        name = dep.provider.name
        p = self._providers.get(name)
        if p is None:
            p = self._providers[name] = _ProviderChildren(self, name)
        p.upstream.observe(outcome.duration_s)
        if outcome.aborted:
            p.aborted.value += 1
        elif status == 504:
            p.timeout.value += 1
        elif status >= 500:
            p.server_error.value += 1
        elif status == 429:
            p.rate_limited.value += 1
        elif status >= 400:
            p.refused.value += 1

    def refused(self, error: ApiError) -> None:
        """Record a request refused before any upstream (authentication, validation, residency, limits)."""
        key = (error.status, error.type, error.code)
        c = self._refusals.get(key)
        if c is None:
            c = self._refusals[key] = self.refusals.labels(str(error.status), error.type, error.code or error.type)
        c.value += 1


class DataPlaneMetrics:
    """Every data-plane metric. ``render`` refreshes the scrape-time gauges, then renders the registry.

    ``backlog``: a callable giving the usage spool's backlog (``lambda: shipper.backlog``), None when not shipping.
    ``snapshot_file``: the persisted snapshot (``SnapshotCache.path``); its modification time is when the snapshot
    in use was received, which survives restarts (a data plane serving from disk reports its true age).
    """

    def __init__(self, holder: SnapshotHolder, region: str, *, backlog: Callable[[], int] | None = None,
                 snapshot_file: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry = Registry()
        self.requests = RequestMetrics(registry)
        self._holder = holder
        self._region = region
        self._backlog_source = backlog
        self._snapshot_file = snapshot_file
        self._clock = clock
        self._info = registry.gauge("tollway_snapshot_info", "The snapshot in use (value 1)", ["region", "version"])
        self._age = registry.gauge("tollway_snapshot_age_seconds", "Seconds since the snapshot in use was received")
        self._backlog = registry.gauge("tollway_usage_backlog_records",
                                       "Usage records spooled but not yet acknowledged by the control plane")
        self._first_seen: tuple[str, float] = ("", 0.0)
        self._health: Health | None = None
        self._edge: tuple[EdgeCounts, InFlightCount] | None = None
        self._edge_events = registry.counter(
            "tollway_edge_events_total", "Requests and connections the edge refused: header_timeout (408), "
            "headers_too_large (431), malformed_request (400), client_connection_limit (429), body_timeout (408), "
            "shed (503 beyond the overload manager's limit)", ["event"])
        self._in_flight = registry.gauge("tollway_requests_in_flight", "Requests being served")
        self._in_flight_limit = registry.gauge(
            "tollway_requests_in_flight_limit", "The overload manager's limit on requests in flight (at most "
            "--max-in-flight; lower while the event loop lags)")
        self._loop_lag = registry.gauge(
            "tollway_event_loop_lag_seconds", "The event loop's average lag over the last 200 ms")
        self._loop_utilization = registry.gauge(
            "tollway_event_loop_utilization", "The share of the last 200 ms the event loop's thread spent on the CPU")
        self._failures = registry.counter(
            "tollway_upstream_failures_total", "Failed upstream attempts by provider and kind (connect, timeout "
            "(stream deadlines too), 5xx, 429, 4xx, auth, protocol (answers too large, events too large, 2xx "
            "answers that are not what the API promises))", ["provider", "kind"])
        self._deployment_up = registry.gauge(
            "tollway_deployment_available", "1 when the deployment takes traffic, 0 while its breaker is open or "
            "its provider failed the active health check", ["deployment", "provider", "state"])
        self._ejections = registry.gauge(
            "tollway_deployment_ejections", "Ejections in a row of the deployment (0: breaker closed)",
            ["deployment", "provider"])
        self._ttfb_ewma = registry.gauge(
            "tollway_deployment_ttfb_ewma_seconds", "EWMA of the deployment's observed time to first byte",
            ["deployment", "provider"])

    def watch_edge(self, events: EdgeCounts, in_flight: InFlightCount) -> None:
        """Report what the connection edge refused, and the requests shed, at scrape time."""
        self._edge = (events, in_flight)

    def watch_health(self, health: Health) -> None:
        """Report ``health`` at scrape time (never on the request path)."""
        self._health = health

    def _refresh_health(self) -> None:
        runtime = self._holder.runtime
        if self._health is None or runtime is None:
            return
        for gauge in (self._deployment_up, self._ejections, self._ttfb_ewma):
            gauge.clear()
        for (provider, kind), n in self._health.failure_counts.items():
            self._failures.labels(provider, kind).value = n
        for v in self._health.view(usable_deployments(runtime), time.monotonic()):
            self._deployment_up.labels(v.deployment, v.provider, v.state).set(1 if v.state == "healthy" else 0)
            self._ejections.labels(v.deployment, v.provider).set(v.ejections)
            self._ttfb_ewma.labels(v.deployment, v.provider).set(v.ttfb_ewma_s)

    def _refresh(self) -> None:
        self._refresh_health()
        if self._edge is not None:
            events, in_flight = self._edge
            for event in EDGE_EVENTS:
                self._edge_events.labels(event).value = in_flight.shed if event == "shed" else events.counts[event]
            self._in_flight.labels().set(in_flight.count)
            self._in_flight_limit.labels().set(in_flight.limit)
            self._loop_lag.labels().set(in_flight.lag_s)
            self._loop_utilization.labels().set(in_flight.utilization)
        version = self._holder.version
        now = self._clock()
        self._info.clear()
        self._info.labels(self._region, version).set(1 if version else 0)
        if version != self._first_seen[0]:
            self._first_seen = (version, now)
        received = self._first_seen[1]
        if self._snapshot_file is not None:
            # Not persisted (yet): keep the time a scrape first saw this version.
            with contextlib.suppress(OSError):
                received = self._snapshot_file.stat().st_mtime
        self._age.labels().set(max(0.0, now - received) if version else math.nan)
        self._backlog.labels().set(self._backlog_source() if self._backlog_source is not None else 0)

    def render(self) -> bytes:
        self._refresh()
        return self.registry.render()


METRICS = web.AppKey("metrics", DataPlaneMetrics)


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics`` (text exposition format); needs ``app[METRICS]``."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": Registry.CONTENT_TYPE})
