"""The control plane's Prometheus metrics, served at ``GET /metrics`` on the admin port.

Scraping without the admin token is the common setup (Prometheus rarely holds secrets for its targets), so by
default ``/metrics`` alone is public; ``ControlPlaneSettings.metrics_require_token`` makes it require the admin
token like every other path. The metrics name only regions, node ids, versions and status words: nothing that a
policy or an operator did not define, and no secret.

Counted as they happen: policy commits (``Repository(on_commit=...)``) and store errors seen by the admin API
(a middleware). Read at scrape time: data planes by region and status, snapshot versions per region, usage
batches stored (DuckDB), retention runs, spend/limit/outstanding grants of tenant and project budgets (never per
key or user: bounded cardinality), alert events recorded and webhook attempts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from controlplane.admin.api import PUBLIC_PATHS, StatusSource
from controlplane.alerts.duty import AlertStats
from controlplane.money.levels import BudgetLevel
from controlplane.store.base import StoreError
from controlplane.usage.db import UsageDB, UsageDBError
from controlplane.usage.retention import RetentionStats
from tollway.money import PICO_PER_USD
from tollway.prometheus import Registry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BudgetLevels = Callable[[], Awaitable[list[BudgetLevel]]]


class _Stats(Protocol):
    @property
    def stats(self) -> RetentionStats: ...


class ControlPlaneMetrics:
    """Every control-plane metric; task-safe on one event loop. ``attach`` supplies what is read at scrape."""

    def __init__(self) -> None:
        self.registry = r = Registry()
        self._commits = r.counter("tollway_policy_commits_total",
                                  "Policy writes committed (apply, delete, key creation, rollback)").labels()
        self._generation = r.gauge("tollway_policy_generation", "The policy generation last committed here").labels()
        self._store_errors = r.counter("tollway_store_errors_total",
                                       "Admin API requests that failed on the policy store").labels()
        self._dataplanes = r.gauge("tollway_dataplanes", "Data planes known, by region, status and connection",
                                   ["region", "status", "connected"])
        self._snapshots = r.gauge("tollway_snapshot_info", "The published snapshot of each region (value 1)",
                                  ["region", "version"])
        self._batches = r.counter("tollway_usage_batches_stored_total", "Usage batches stored in DuckDB").labels()
        self._usage_errors = r.counter("tollway_usage_db_errors_total",
                                       "Failures reading the usage database for metrics").labels()
        self._retention_runs = r.counter("tollway_retention_runs_total", "Usage retention runs").labels()
        self._retention_failures = r.counter("tollway_retention_failures_total",
                                             "Usage retention runs that failed").labels()
        self._retention_deleted = r.counter("tollway_retention_deleted_events_total",
                                            "Usage events deleted by retention").labels()
        self._retention_last = r.gauge("tollway_retention_last_run_timestamp_seconds",
                                       "Unix time of the last successful retention run").labels()
        budget_labels = ["tenant", "project"]  # project "" for the tenant's own budget
        self._spend = r.gauge("tollway_budget_spend_usd", "Settled spend this month per tenant and project budget",
                              budget_labels)
        self._limit = r.gauge("tollway_budget_limit_usd", "Monthly limit per tenant and project budget", budget_labels)
        self._outstanding = r.gauge("tollway_budget_outstanding_usd",
                                    "Budget granted to data planes and not yet settled", budget_labels)
        self._alerts = r.counter("tollway_alert_events_total", "Alert events recorded, by kind", ["kind"])
        self._webhook_attempts = r.counter(
            "tollway_webhook_attempts_total", "Webhook delivery attempts: delivered, failed (retried), gave_up",
            ["result"])
        self._status: StatusSource | None = None
        self._usage_db: UsageDB | None = None
        self._retention: _Stats | None = None
        self._budgets: BudgetLevels | None = None
        self._alert_stats: AlertStats | None = None

    def attach(self, status: StatusSource | None = None, usage_db: UsageDB | None = None,
               retention: _Stats | None = None, budgets: BudgetLevels | None = None,
               alerts: AlertStats | None = None) -> None:
        self._status, self._usage_db, self._retention = status, usage_db, retention
        self._budgets, self._alert_stats = budgets, alerts

    def committed(self, generation: int) -> None:
        """``Repository``'s ``on_commit`` hook."""
        self._commits.value += 1
        self._generation.value = generation

    def store_error(self) -> None:
        self._store_errors.value += 1

    async def render(self) -> bytes:
        if self._status is not None:
            counts: dict[tuple[str, str, str], int] = {}
            for dp in self._status.dataplanes():
                key = (str(dp.get("region")), str(dp.get("status")), "true" if dp.get("connected") else "false")
                counts[key] = counts.get(key, 0) + 1
            self._dataplanes.clear()
            for labels, n in counts.items():
                self._dataplanes.labels(*labels).set(n)
            self._snapshots.clear()
            for snap in self._status.snapshots():
                self._snapshots.labels(str(snap.get("region")), str(snap.get("version"))).set(1)
        if self._usage_db is not None:
            try:
                self._batches.value = await self._usage_db.count_batches()
            except UsageDBError:
                self._usage_errors.value += 1
        if self._retention is not None:
            stats = self._retention.stats
            self._retention_runs.value = stats.runs
            self._retention_failures.value = stats.failures
            self._retention_deleted.value = stats.deleted
            self._retention_last.value = stats.last_run
        if self._budgets is not None:
            try:
                levels = await self._budgets()
            except StoreError:
                self.store_error()
            else:
                for gauge in (self._spend, self._limit, self._outstanding):
                    gauge.clear()
                for b in levels:
                    self._spend.labels(b.tenant, b.project).set(b.spent / PICO_PER_USD)
                    self._limit.labels(b.tenant, b.project).set(b.limit / PICO_PER_USD)
                    self._outstanding.labels(b.tenant, b.project).set(b.outstanding / PICO_PER_USD)
        if self._alert_stats is not None:
            for kind, n in self._alert_stats.recorded.items():
                self._alerts.labels(kind).value = n
            for result, n in self._alert_stats.attempts.items():
                self._webhook_attempts.labels(result).value = n
        return self.registry.render()


METRICS = web.AppKey("controlplane_metrics", ControlPlaneMetrics)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=await request.app[METRICS].render(), headers={"Content-Type": Registry.CONTENT_TYPE})


def add_metrics_routes(app: web.Application, metrics: ControlPlaneMetrics, *, require_token: bool) -> None:
    """``GET /metrics`` on the admin app (public unless ``require_token``), and the store-error counter."""
    app[METRICS] = metrics
    app.router.add_get("/metrics", _metrics)
    if not require_token:
        app[PUBLIC_PATHS] = app[PUBLIC_PATHS] | {"/metrics"}

    @web.middleware
    async def count_store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError:
            metrics.store_error()
            raise

    app.middlewares.append(count_store_errors)
