"""The I/O shell behind the dashboard's operational sections: reads the ledger, the published snapshots, the
discovery registry and DuckDB, and hands ``dashboard_sections.Extras`` to the page. No rendering here.

Cost of one refresh, whatever the volume: one ranged read of this month's ledger documents, and four aggregate
queries over ``usage_events`` (hours of the last 24 h, keys and projects of the period, tenants and projects of
the last 7 days), each answering one row per group, never per event. The fleet comes from memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from controlplane.admin.dashboard.sections import DataPlaneRow, DeploymentRow, Extras, Fleet, rank
from controlplane.money.budget_status import BudgetStatus, budget_limits, budget_statuses
from controlplane.money.ledger import ScopeState
from controlplane.push.discovery import Registry
from controlplane.push.publisher import Publisher
from controlplane.store.base import Store
from controlplane.store.layout import budget_key
from controlplane.usage import analytics as an
from tollway.budget_scopes import period_of, project_scope, tenant_scope
from tollway.money import PICO_PER_MICRO

HOURS = 24
MAX_HOURLY_SERIES = 8


@dataclass(frozen=True)
class DashboardSources:
    """What the budgets and health sections read besides DuckDB; the control plane sets it at start."""

    registry: Registry
    publisher: Publisher
    store: Store


SOURCES = web.AppKey("dashboard_sources", DashboardSources)


def hour_range(now: datetime) -> list[datetime]:
    """The last ``HOURS`` UTC hours, the current (partial) one last: the hour chart's x axis."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]


def hourly_series(rows: list[an.HourlyCost]) -> dict[str, dict[date, float]]:
    """Cost (micro-dollars) per group and hour, biggest group first; beyond the first few groups, one "other"."""
    sums: dict[str, int] = {}
    for r in rows:
        sums[r.group] = sums.get(r.group, 0) + r.cost_pico
    keep = [g for g, _ in sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_HOURLY_SERIES]
    series: dict[str, dict[date, float]] = {name: {} for name in keep}
    for r in rows:
        by_hour = series.setdefault(r.group if r.group in keep else "other", {})
        by_hour[r.hour] = by_hour.get(r.hour, 0.0) + r.cost_pico / PICO_PER_MICRO
    return series


def fleet_of(records: list[dict[str, Any]], latest: Mapping[str, str]) -> Fleet:
    """The registry's records (``Registry.dataplanes``) as table rows. A deployment's ``reason`` and ``since``
    (unix s, the data plane's clock; 0 when healthy) are shown when its data plane sends them."""
    planes, deployments = [], []
    for r in records:
        planes.append(DataPlaneRow(r["nodeId"], r["region"], r["version"], latest.get(r["region"], ""), r["status"],
                                   r["error"], r["lastSeen"], r["connected"]))
        for h in r["health"]:
            since = float(h.get("since") or 0)
            deployments.append(DeploymentRow(r["nodeId"], h["deployment"], h["provider"], h["state"],
                                             str(h.get("reason") or ""), since if since > 0 else None))
    return Fleet(planes, deployments)


async def _ledger(store: Store, period: str) -> dict[str, tuple[int, int]]:
    """scope -> (spent, held) of every ledger document of the month, in one ranged read."""
    prefix = budget_key(period, "")
    listing = await store.list(prefix)
    out = {}
    for kv in listing.items:
        state = ScopeState.from_json(kv.value)
        out[kv.key[len(prefix):]] = (state.spent, state.outstanding())
    return out


async def _budgets(sources: DashboardSources, reports: an.Analytics, now: float,
                   tenant: str | None) -> list[BudgetStatus]:
    snapshots = [s for s in (sources.publisher.snapshot(r) for r in sources.publisher.regions()) if s is not None]
    limits = [b for b in budget_limits(snapshots) if tenant is None or b.tenant == tenant]
    if not limits:
        return []
    week = an.Span(int((now - 7 * 86_400) * 1000), int(now * 1000))
    ledger, tenants, projects = await asyncio.gather(
        _ledger(sources.store, period_of(now)), reports.ranked_cost("tenant", week),
        reports.ranked_cost("project", week))
    spent_week = {tenant_scope(r.group): r.cost_pico for r in tenants}
    for r in projects:
        t, _, p = r.group.partition("/")  # "tenant/project": a tenant name has no "/"
        spent_week[project_scope(t, p)] = r.cost_pico
    return budget_statuses(limits, ledger, spent_week, now)


def _fleet(sources: DashboardSources) -> Fleet:
    records = sources.registry.dataplanes()
    latest = {region: sources.publisher.version(region) for region in {r["region"] for r in records}}
    return fleet_of(records, latest)


async def gather_extras(app: web.Application, reports: an.Analytics, period: an.Period, cost_by: an.CostDimension,
                        filters: Mapping[an.Filter, str]) -> Extras:
    """Everything the operational sections show, read now."""
    now = time.time()
    hours = hour_range(datetime.fromtimestamp(now, UTC))
    sources = app.get(SOURCES)
    day_span = an.Span(int(hours[0].timestamp() * 1000), None)

    async def no_budgets() -> None:
        return None

    budgets_task = _budgets(sources, reports, now, filters.get("tenant")) if sources else no_budgets()
    hourly, keys, projects, budgets = await asyncio.gather(
        reports.hourly_cost(cost_by, day_span, filters), reports.ranked_cost("key", period.span, filters),
        reports.ranked_cost("project", period.span, filters), budgets_task)
    return Extras(
        as_of=now, budgets=budgets, fleet=_fleet(sources) if sources else None, hours=hours,
        hourly=hourly_series(hourly), cost_by=cost_by,
        # By tag a request counts once under each of its tags: the sums would count it several times.
        hourly_requests=sum(r.requests for r in hourly) if cost_by != "tag" else None,
        hourly_cost_pico=sum(r.cost_pico for r in hourly) if cost_by != "tag" else None,
        top_keys=rank(keys), top_projects=rank(projects))


def add_dashboard_sources(app: web.Application, registry: Registry, publisher: Publisher, store: Store) -> None:
    """Give the dashboard its budget and health sources (without them those sections say they are unavailable)."""
    app[SOURCES] = DashboardSources(registry, publisher, store)
