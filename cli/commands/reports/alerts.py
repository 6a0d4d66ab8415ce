"""``gatectl alerts``: budget and rate-limit alert events and how their webhook deliveries went."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, OutputOpt, connect
from cli.render.output import OutputFormat, show_items, table

KINDS = ("budget.soft_threshold", "budget.exhausted", "ratelimit.refusing")
STATES = ("pending", "delivered", "failed", "none")


def alerts(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's events")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help=f"Only one kind: {', '.join(KINDS)}")] = None,
    state: Annotated[str | None, typer.Option("--state", help=f"Only one state: {', '.join(STATES)}")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many events, newest first")] = 100,
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Alert events, newest first: time, kind, tenant/project/scope, delivery state and attempts.

    Kinds: budget.soft_threshold (spend passed the budget's softPercent), budget.exhausted (requests are refused
    for lack of budget), ratelimit.refusing (a rate-limit scope kept refusing for a minute). State: delivered to
    every webhook, pending (retrying with back-off), failed (gave up; see -o yaml for the last error), none (no
    webhook subscribed)."""
    with exit_on_error():
        query = {"limit": str(limit)}
        for name, value in (("tenant", tenant), ("kind", kind), ("state", state)):
            if value:
                query[name] = value
        answer = connect(control_plane, admin_token).alerts(query)
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        show_items(items, answer, output, alerts_table, "No alerts.")


def alerts_table(items: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for e in items:
        when = e.get("time")
        stamp = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if isinstance(when, int | float) else "-"
        rows.append([stamp, str(e.get("kind") or "-"), str(e.get("tenant") or "-"), str(e.get("project") or "-"),
                     str(e.get("scope") or "-"), str(e.get("state") or "-"), str(e.get("attempts") or 0),
                     str(e.get("id") or "-")])
    return table(("TIME", "KIND", "TENANT", "PROJECT", "SCOPE", "STATE", "ATTEMPTS", "ID"), rows)
