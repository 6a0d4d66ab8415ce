"""``gatectl usage``: spend by tenant, project, user, route (model), deployment or tag for a period."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect
from cli.output import RowsFormat, show_rows

DIMENSIONS = ("tenant", "project", "user", "key", "route", "deployment", "provider", "region", "tag")


def usage(
    by: Annotated[str, typer.Option("--by", help=f"Comma-separated, from: {', '.join(DIMENSIONS)}")] = "tenant",
    since: Annotated[str | None, typer.Option("--since", help="ISO date/time, UTC [default: start of month]")]
    = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date/time, UTC (exclusive)")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Only this project")] = None,
    output: Annotated[RowsFormat, typer.Option("--output", "-o")] = RowsFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Requests, tokens and cost (USD) per group, biggest spender first."""
    with exit_on_error():
        query = {"by": by}
        for name, value in (("since", since), ("until", until), ("tenant", tenant), ("project", project)):
            if value:
                query[name] = value
        answer = connect(control_plane, admin_token).usage(query)
        dims: list[str] = list(answer.get("by") or [])
        headers = [d.upper() for d in dims] + ["REQUESTS", "INPUT TOKENS", "CACHED", "OUTPUT TOKENS", "COST USD"]
        rows = [_row(r, dims) for r in answer.get("rows") or [] if isinstance(r, dict)]
        show_rows(answer, headers, rows, output, f"No usage since {answer.get('since')}.")


def _row(r: dict[str, Any], dims: list[str]) -> list[str]:
    group = r.get("group") or {}
    return [str(group.get(d) or "-") for d in dims] + [
        str(r.get("requests", 0)), str(r.get("inputTokens", 0)), str(r.get("cachedInputTokens", 0)),
        str(r.get("outputTokens", 0)), str(r.get("costUsd", "0")),
    ]
