"""``history``, ``rollback`` and ``dataplanes``: what changed, undoing it, and who runs what."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.commands.policy import change_lines
from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.output import OutputFormat, dataplanes_table, history_table, show_items


def history(
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Policy revisions, newest first: when, who, what changed."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).history()
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        show_items(items, answer, output, history_table, "No history yet.")


def rollback(
    to: Annotated[int, typer.Option("--to", min=1, help="The revision whose policy to restore")],
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Restore the policy as of revision REV (recorded as a new revision)."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).rollback(to, who(as_))
        for line in change_lines(answer.get("changes") or [], dry_run=False):
            print(line)
        print(f"rolled back to revision {to}; now at revision {answer.get('revision', '?')}")


def dataplanes(
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Data planes known to the control plane: region, snapshot version, ACK/NACK, last seen."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).dataplanes()
        items: list[dict[str, Any]] = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        show_items(items, answer, output, dataplanes_table, "No data planes have connected.")
