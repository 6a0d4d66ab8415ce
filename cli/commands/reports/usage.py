"""``gatectl usage``: spend by tenant, project, user, route (model), deployment or tag for a period."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect
from cli.render.output import RowsFormat, show_rows

DIMENSIONS = ("tenant", "project", "user", "key", "route", "deployment", "provider", "region", "tag")
# The number columns and the answer's field each shows. Every token kind billed apart has a column, always: a zero
# says "none", and a script reading the table or the CSV finds the same columns whatever the data.
COLUMNS = (("REQUESTS", "requests"), ("INPUT TOKENS", "inputTokens"), ("CACHE READ", "cachedInputTokens"),
           ("CACHE WRITE", "cacheWriteTokens"), ("OUTPUT TOKENS", "outputTokens"), ("REASONING", "reasoningTokens"))


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
    """Requests, tokens of each kind and cost (USD) per group, biggest spender first.

    Cache reads and writes (prompt cache) are part of the input tokens, reasoning part of the output tokens."""
    with exit_on_error():
        query = {"by": by}
        for name, value in (("since", since), ("until", until), ("tenant", tenant), ("project", project)):
            if value:
                query[name] = value
        answer = connect(control_plane, admin_token).usage(query)
        dims: list[str] = list(answer.get("by") or [])
        headers = [d.upper() for d in dims] + [header for header, _ in COLUMNS] + ["COST USD"]
        rows = [_row(r, dims) for r in answer.get("rows") or [] if isinstance(r, dict)]
        show_rows(answer, headers, rows, output, f"No usage since {answer.get('since')}.")


def _row(r: dict[str, Any], dims: list[str]) -> list[str]:
    group = r.get("group") or {}
    return [str(group.get(d) or "-") for d in dims] + [str(r.get(field) or 0) for _, field in COLUMNS] + [
        str(r.get("costUsd") or "0")]
