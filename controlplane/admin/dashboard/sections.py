"""The dashboard's operational sections: budgets, fleet health, the last 24 h by hour, top keys and projects.

Pure functions from ``Extras`` (gathered by ``controlplane.admin.dashboard.data``) to HTML. Every value is escaped.
Sizes are bounded whatever the fleet: tables show the ``TOP_ROWS`` most relevant rows (most at risk, unhealthy
first, biggest cost) and say how many more there are; rankings end with one exact "others" row. Rows carry
``data-*`` attributes with the exact numbers (pico-dollars) so scripts and the browser tests read what a person sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape

from controlplane.admin.dashboard import charts
from controlplane.money.budget_status import BudgetStatus
from controlplane.usage.analytics import RankedCost
from tollway.money import PICO_PER_MICRO, PICO_PER_USD

TOP_ROWS = 15   # rows of a budget or health table
TOP_RANKED = 10  # keys or projects before "others"
VERSION_CHARS = 12
# The circuit breaker each reported state amounts to (``no-credential``: never routed to, as good as open).
BREAKERS = {"healthy": "closed", "trial": "half-open", "ejected": "open", "provider-down": "open",
            "no-credential": "open"}


def money(pico: float) -> str:
    """Dollars: cents once the amount reaches a cent, else micro-dollar precision (so tiny costs are not $0.00)."""
    if pico == 0 or abs(pico) >= 10_000 * PICO_PER_MICRO:
        return f"${pico / PICO_PER_USD:,.2f}"
    return f"${pico / PICO_PER_USD:.6f}"


@dataclass(frozen=True, slots=True)
class Ranking:
    """The top groups by cost and, when there are more, one row summing the rest (``others_count`` groups)."""

    rows: Sequence[RankedCost]
    others: RankedCost | None
    others_count: int


def rank(rows: Sequence[RankedCost], limit: int = TOP_RANKED) -> Ranking:
    """The first ``limit`` rows (they come biggest cost first) and the exact sum of the rest."""
    top, rest = rows[:limit], rows[limit:]
    if not rest:
        return Ranking(top, None, 0)
    others = RankedCost("others", sum(r.requests for r in rest), sum(r.input_tokens for r in rest),
                        sum(r.output_tokens for r in rest), sum(r.cost_pico for r in rest))
    return Ranking(top, others, len(rest))


@dataclass(frozen=True, slots=True)
class DataPlaneRow:
    node_id: str
    region: str
    version: str
    latest: str  # the version published for its region now ("" while there is none)
    status: str  # ACK | NACK | PENDING
    error: str
    last_seen: str  # ISO, UTC
    connected: bool


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    node_id: str
    deployment: str
    provider: str
    state: str
    reason: str  # the data plane's reason for an unhealthy state when it sends one, else ""
    since: float | None  # unix s the (unhealthy) state began, by the data plane's clock; None when not sent

    @property
    def is_healthy(self) -> bool:
        return self.state == "healthy"


@dataclass(frozen=True, slots=True)
class Fleet:
    dataplanes: Sequence[DataPlaneRow]
    deployments: Sequence[DeploymentRow]


@dataclass(frozen=True)
class Extras:
    """What the operational sections show. ``budgets``/``fleet`` are None when the control plane did not wire
    their sources (an admin app without a fleet): the sections then say so instead of showing zeros."""

    as_of: float  # unix s the numbers were taken at
    budgets: Sequence[BudgetStatus] | None
    fleet: Fleet | None
    hours: Sequence[datetime]
    hourly: Mapping[str, Mapping[date, float]]  # micro-dollars per series and hour
    hourly_requests: int | None  # None by tag (a request counts under each of its tags)
    hourly_cost_pico: int | None
    cost_by: str
    top_keys: Ranking
    top_projects: Ranking


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _wide(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}" class="wide">{title}{body}</section>'


def _meter(status: BudgetStatus) -> str:
    spent = min(status.used_percent, 100.0)
    projected = min(status.projected_percent, 100.0)
    level = "over" if status.will_exceed or status.used_percent >= 100 else \
        "soft" if status.projected_percent >= status.budget.limit.soft_percent else "ok"
    return (f'<div class="meter {level}" title="spent {status.used_percent:.1f}%, projected '
            f'{status.projected_percent:.1f}% of the limit"><span class="spent" style="width:{spent:.1f}%"></span>'
            f'<span class="projected" style="left:{projected:.1f}%"></span></div>')


def _budget_table(kind: str, statuses: Sequence[BudgetStatus]) -> str:
    noun = "Tenant" if kind == "tenant" else "Project"
    shown = statuses[:TOP_ROWS]
    rows = "".join(
        f'<tr data-scope="{escape(s.budget.scope)}" data-limit-pico="{s.limit_pico}" data-spent-pico="{s.spent_pico}" '
        f'data-held-pico="{s.held_pico}" data-week-pico="{s.week_pico}" data-burn-pico="{s.burn_per_day_pico}" '
        f'data-projected-pico="{s.projected_pico}">'
        f"<td>{escape(s.budget.tenant if kind == 'tenant' else s.budget.tenant + '/' + s.budget.project)}</td>"
        f"<td class=meter-cell>{_meter(s)}</td>"
        f"<td class=n>{money(s.spent_pico)}</td><td class=n>{money(s.limit_pico)}</td>"
        f"<td class=n>{s.used_percent:.1f}%</td><td class=n>{money(s.burn_per_day_pico)}</td>"
        f"<td class=n>{money(s.projected_pico)}</td><td class=n>{money(s.held_pico)}</td></tr>"
        for s in shown)
    more = len(statuses) - len(shown)
    note = (f'<p class="note more">{more:,} more {noun.lower()} budgets, each projected at or below '
            f"{statuses[TOP_ROWS - 1].projected_percent:.0f}% of its limit.</p>") if more > 0 else ""
    return (f'<table id="budgets-{kind}" class="budgets"><thead><tr><th>{noun}</th><th>Spent / projected</th>'
            '<th class=n>Spent</th><th class=n>Limit</th><th class=n>Used</th><th class=n>Burn / day</th>'
            '<th class=n>Month end</th><th class=n>Held</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>{note}")


def budgets_section(extras: Extras) -> str:
    title = "<h2>Budgets this month (UTC)</h2>"
    if extras.budgets is None:
        return _wide("budgets", title, '<p class="empty">Budgets are not available here.</p>')
    if not extras.budgets:
        return (f'<section id="budgets" class="wide" data-as-of="{extras.as_of:.3f}">{title}'
                '<p class="empty">No tenant or project has a budget.</p></section>')
    tables = "".join(_budget_table(kind, [s for s in extras.budgets if s.budget.kind == kind])
                     for kind in ("tenant", "project") if any(s.budget.kind == kind for s in extras.budgets))
    at_risk = sum(1 for s in extras.budgets if s.will_exceed)
    return (f'<section id="budgets" class="wide" data-as-of="{extras.as_of:.3f}">{title}'
            f'<p class="note" id="budgets-summary">{len(extras.budgets):,} budgets; {at_risk:,} projected to exceed '
            "their limit. Bar: spent (filled) and projected month end (mark). Burn is the average per day over the "
            "last 7 days; month end adds that pace to what is settled; held is granted to data planes, not yet "
            f"spent.</p>{tables}</section>")


def _version(row: DataPlaneRow) -> str:
    shown = escape(row.version[:VERSION_CHARS] or "none")
    if not row.latest:
        freshness = ""
    elif row.version == row.latest:
        freshness = ' <span class="ok">current</span>'
    else:
        freshness = f' <span class="warn" title="published: {escape(row.latest)}">behind</span>'
    return f'<span title="{escape(row.version)}">{shown}</span>{freshness}'


def _dataplanes_table(rows: Sequence[DataPlaneRow]) -> str:
    ordered = sorted(rows, key=lambda r: (r.connected and r.status == "ACK", r.region, r.node_id))[:TOP_ROWS]
    body = "".join(
        f'<tr data-node="{escape(r.node_id)}" data-status="{escape(r.status)}" data-version="{escape(r.version)}">'
        f"<td>{escape(r.node_id)}</td><td>{escape(r.region)}</td><td>{_version(r)}</td>"
        f'<td class="{"ok" if r.status == "ACK" else "warn"}">{escape(r.status)}'
        f'{": " + escape(r.error) if r.error else ""}</td>'
        f"<td>{'yes' if r.connected else '<span class=warn>no</span>'}</td><td>{escape(r.last_seen)}</td></tr>"
        for r in ordered)
    more = len(rows) - len(ordered)
    note = f'<p class="note more">{more:,} more data planes, all connected and ACKed.</p>' if more > 0 else ""
    return ('<table id="dataplanes"><thead><tr><th>Data plane</th><th>Region</th><th>Snapshot</th>'
            f"<th>Last answer</th><th>Connected</th><th>Last seen</th></tr></thead><tbody>{body}</tbody></table>"
            f"{note}")


def _deployments_table(rows: Sequence[DeploymentRow]) -> str:
    ordered = sorted(rows, key=lambda r: (r.is_healthy, r.deployment, r.node_id))[:TOP_ROWS]
    body = "".join(
        f'<tr data-node="{escape(r.node_id)}" data-deployment="{escape(r.deployment)}" data-state="{escape(r.state)}">'
        f"<td>{escape(r.deployment)}</td><td>{escape(r.provider)}</td><td>{escape(r.node_id)}</td>"
        f'<td class="{"ok" if r.is_healthy else "warn"}">{escape(r.state)}</td>'
        f"<td>{escape(BREAKERS.get(r.state, 'unknown'))}</td><td>{escape(r.reason or r.state)}</td>"
        f"<td>{_iso(r.since) if r.since is not None else '-'}</td></tr>"
        for r in ordered)
    more = len(rows) - len(ordered)
    note = f'<p class="note more">{more:,} more deployment reports, all healthy.</p>' if more > 0 else ""
    return ('<table id="deployment-health"><thead><tr><th>Deployment</th><th>Provider</th><th>Data plane</th>'
            "<th>State</th><th>Breaker</th><th>Reason</th><th>Since</th></tr></thead>"
            f"<tbody>{body}</tbody></table>{note}")


def health_section(extras: Extras) -> str:
    title = "<h2>Fleet health</h2>"
    if extras.fleet is None:
        return _wide("health", title, '<p class="empty">Fleet health is not available here.</p>')
    fleet = extras.fleet
    if not fleet.dataplanes:
        return _wide("health", title, '<p class="empty">No data plane has connected yet.</p>')
    connected = sum(1 for r in fleet.dataplanes if r.connected)
    unhealthy = sum(1 for r in fleet.deployments if not r.is_healthy)
    summary = (f'<p class="note" id="health-summary">{len(fleet.dataplanes):,} data planes, {connected:,} connected; '
               f"{unhealthy:,} of {len(fleet.deployments):,} deployment reports unhealthy.</p>")
    deployments = _deployments_table(fleet.deployments) if fleet.deployments else \
        '<p class="empty">No data plane reports deployment health.</p>'
    return _wide("health", title, summary + _dataplanes_table(fleet.dataplanes) + deployments)


def _micro_money(micros: float) -> str:
    return money(micros * PICO_PER_MICRO)


def hourly_section(extras: Extras) -> str:
    label = f"Cost per {extras.cost_by} per hour, last 24 h (UTC)"
    chart = charts.stacked_bars(extras.hours, extras.hourly, _micro_money, label, tick="%H:00") \
        if extras.hourly else charts.empty(label)
    totals = (f"{extras.hourly_requests:,} requests, {money(extras.hourly_cost_pico)} in the last 24 h"
              if extras.hourly_requests is not None and extras.hourly_cost_pico is not None
              else "A request counts once under each of its tags.")
    return (f'<section id="hourly"><h2>{escape(label)}</h2><p class="note" id="hourly-totals">{totals}</p>'
            f"{chart}{charts.legend(list(extras.hourly))}</section>")


def _ranking_table(table_id: str, noun: str, ranking: Ranking) -> str:
    total = sum(r.cost_pico for r in ranking.rows) + (ranking.others.cost_pico if ranking.others else 0)

    def row(r: RankedCost, name: str, css: str = "") -> str:
        share = 100 * r.cost_pico / total if total > 0 else 0.0
        return (f'<tr{css} data-group="{escape(r.group)}" data-cost-pico="{r.cost_pico}"><td title="{name}">{name}</td>'
                f'<td class=meter-cell><div class="meter ok"><span class="spent" style="width:{share:.1f}%"></span>'
                f"</div></td><td class=n>{r.requests:,}</td><td class=n>{money(r.cost_pico)}</td></tr>")

    body = "".join(row(r, escape(r.group)) for r in ranking.rows)
    if ranking.others is not None:
        body += row(ranking.others, f"others ({ranking.others_count:,} {noun}s)", ' class="others"')
    return (f'<table id="{table_id}" class="ranking"><thead><tr><th>{noun.capitalize()}</th><th>Share of cost</th>'
            f"<th class=n>Requests</th><th class=n>Cost</th></tr></thead><tbody>{body}</tbody></table>")


def top_section(section_id: str, title: str, noun: str, ranking: Ranking) -> str:
    if not ranking.rows:
        return f'<section id="{section_id}"><h2>{escape(title)}</h2>{charts.empty(title)}</section>'
    return (f'<section id="{section_id}"><h2>{escape(title)}</h2>'
            f"{_ranking_table(section_id + '-table', noun, ranking)}</section>")
