"""``gatectl report``: usage analytics from the control plane (``/admin/v1/analytics/*``) as a table, CSV or JSON.

    gatectl report daily-cost [--by tenant|project|tag]     cost per day and team, project or use case (tag)
    gatectl report latency    [--by route|deployment]       p50/p95 latency and time to first byte per model, day
    gatectl report errors     [--by provider|deployment]    error rate per provider or deployment, day
    gatectl report top-users  [--order cost|requests]       the biggest users

All take ``--since``/``--until`` (ISO dates or times, UTC; default the last 30 days) and ``--tenant``/
``--project``/``--route``/``--provider`` filters. Tables and CSV are rendered from the JSON answer, so the three
formats always agree; CSV headers are the table's in snake case.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect
from cli.render.output import RowsFormat, show_rows
from cli.render.progress import Progress, count, summary

report_app = typer.Typer(help="Usage analytics: daily cost, latency trends, error rates, top users.",
                         no_args_is_help=True)


class CostBy(enum.StrEnum):
    tenant = "tenant"
    project = "project"
    tag = "tag"


class ModelBy(enum.StrEnum):
    route = "route"
    deployment = "deployment"


class ErrorsBy(enum.StrEnum):
    provider = "provider"
    deployment = "deployment"


class UserOrder(enum.StrEnum):
    cost = "cost"
    requests = "requests"


SinceOpt = Annotated[str | None, typer.Option("--since", help="ISO date/time, UTC (default: the last 30 days)")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="ISO date/time, UTC (exclusive)")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", help="Only this tenant")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Only this project")]
RouteOpt = Annotated[str | None, typer.Option("--route", help="Only this model (route)")]
ProviderOpt = Annotated[str | None, typer.Option("--provider", help="Only this provider")]
FormatOpt = Annotated[RowsFormat, typer.Option("--output", "-o", help="Output format")]

Columns = Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]]


def _field(name: str, empty: str = "-") -> Callable[[Mapping[str, Any]], str]:
    return lambda row: empty if row.get(name) in (None, "") else str(row[name])


def _percent(row: Mapping[str, Any]) -> str:
    return f"{100 * float(row.get('errorRate') or 0):.2f}%"


def _query(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class Fetched:
    report: str
    answer: dict[str, Any]
    elapsed_s: float


def _show(fetched: Fetched, columns: Columns, output: RowsFormat) -> None:
    """The rows, then a one-line summary on stderr."""
    answer = fetched.answer
    rows = [[cell(r) for _, cell in columns] for r in answer.get("rows") or [] if isinstance(r, dict)]
    show_rows(answer, [h for h, _ in columns], rows, output, f"No usage since {answer.get('since')}.")
    summary(f"report {fetched.report}: {count(len(rows), 'row')}, {answer.get('since') or '?'} to "
            f"{answer.get('until') or 'now'}, in {fetched.elapsed_s:.1f}s")


def _fetch(control_plane: str | None, admin_token: str | None, report: str, query: dict[str, str]) -> Fetched:
    """The report's answer; meanwhile, on a terminal, the time it has taken (months of usage take a while)."""
    with Progress() as progress, progress.waiting(f"report {report}: querying the control plane"):
        answer = connect(control_plane, admin_token).analytics(report, query)
    return Fetched(report, answer, progress.elapsed_s)


@report_app.command("daily-cost")
def daily_cost(
    by: Annotated[CostBy, typer.Option("--by", help="Group by team (tenant), project or use case (tag)")]
    = CostBy.tenant,
    since: SinceOpt = None, until: UntilOpt = None, tenant: TenantOpt = None, project: ProjectOpt = None,
    route: RouteOpt = None, provider: ProviderOpt = None, output: FormatOpt = RowsFormat.table,
    control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
) -> None:
    """Cost per day and tenant, project or tag (a request counts once under each of its tags)."""
    with exit_on_error():
        answer = _fetch(control_plane, admin_token, "daily-cost", _query(
            by=by.value, since=since, until=until, tenant=tenant, project=project, route=route, provider=provider))
        _show(answer, [("DAY", _field("day")), (by.value.upper(), _field(by.value)),
                       ("REQUESTS", _field("requests")), ("INPUT TOKENS", _field("inputTokens")),
                       ("OUTPUT TOKENS", _field("outputTokens")), ("COST USD", _field("costUsd"))], output)


@report_app.command("latency")
def latency(
    by: Annotated[ModelBy, typer.Option("--by", help="Per model asked for (route) or deployment that served")]
    = ModelBy.route,
    since: SinceOpt = None, until: UntilOpt = None, tenant: TenantOpt = None, project: ProjectOpt = None,
    route: RouteOpt = None, provider: ProviderOpt = None, output: FormatOpt = RowsFormat.table,
    control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
) -> None:
    """p50/p95 total latency and time to first byte (ms) per day, over successful requests."""
    with exit_on_error():
        answer = _fetch(control_plane, admin_token, "latency", _query(
            by=by.value, since=since, until=until, tenant=tenant, project=project, route=route, provider=provider))
        _show(answer, [("DAY", _field("day")), (by.value.upper(), _field(by.value)),
                       ("REQUESTS", _field("requests")), ("P50 MS", _field("p50Ms")), ("P95 MS", _field("p95Ms")),
                       ("TTFB P50 MS", _field("ttfbP50Ms")), ("TTFB P95 MS", _field("ttfbP95Ms"))], output)


@report_app.command("errors")
def errors(
    by: Annotated[ErrorsBy, typer.Option("--by", help="Per provider or deployment")] = ErrorsBy.provider,
    since: SinceOpt = None, until: UntilOpt = None, tenant: TenantOpt = None, project: ProjectOpt = None,
    route: RouteOpt = None, provider: ProviderOpt = None, output: FormatOpt = RowsFormat.table,
    control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
) -> None:
    """Error rate per day: the share of requests answered with status >= 400 or an error type."""
    with exit_on_error():
        answer = _fetch(control_plane, admin_token, "errors", _query(
            by=by.value, since=since, until=until, tenant=tenant, project=project, route=route, provider=provider))
        _show(answer, [("DAY", _field("day")), (by.value.upper(), _field(by.value)),
                       ("REQUESTS", _field("requests")), ("ERRORS", _field("errors")), ("ERROR RATE", _percent)],
              output)


@report_app.command("top-users")
def top_users(
    order: Annotated[UserOrder, typer.Option("--order", help="Rank by cost or by requests")] = UserOrder.cost,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many users")] = 10,
    since: SinceOpt = None, until: UntilOpt = None, tenant: TenantOpt = None, project: ProjectOpt = None,
    route: RouteOpt = None, provider: ProviderOpt = None, output: FormatOpt = RowsFormat.table,
    control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
) -> None:
    """The users with the highest cost (or most requests); requests without a user are not counted."""
    with exit_on_error():
        answer = _fetch(control_plane, admin_token, "top-users", _query(
            order=order.value, limit=str(limit), since=since, until=until, tenant=tenant, project=project,
            route=route, provider=provider))
        _show(answer, [("TENANT", _field("tenant")), ("USER", _field("user")), ("REQUESTS", _field("requests")),
                       ("INPUT TOKENS", _field("inputTokens")), ("OUTPUT TOKENS", _field("outputTokens")),
                       ("COST USD", _field("costUsd"))], output)
