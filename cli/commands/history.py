"""``history``, ``rollback`` and ``dataplanes``: what changed, undoing it, and who runs what."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.commands.policy import change_lines
from cli.errors import ExitCode, UsageError, exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.render.output import OutputFormat, dataplanes_table, history_table, show_items


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


KEPT_REASONS = {
    "keys-excluded": "keys are kept unless --include-keys",
    "secret-retired": "the secret it had then was revoked or rotated out since; never restored",
}


def rollback_lines(to: int, answer: Mapping[str, Any]) -> list[str]:
    """What a rollback would change, by kind/name, with the keys it would delete (or keep) called out."""
    changes = [c for c in answer.get("changes") or [] if isinstance(c, Mapping)]
    kept = [k for k in answer.get("keptKeys") or [] if isinstance(k, Mapping)]
    lines = [f"rollback to revision {to} (now at revision {answer.get('revision', '?')}) would:"]
    lines += [f"  {c.get('op')} {c.get('kind')}/{c.get('name')}" for c in changes] or ["  change nothing"]
    deleted = [f"ApiKey/{c.get('name')}" for c in changes if c.get("kind") == "ApiKey" and c.get("op") == "delete"]
    if deleted:
        lines.append(f"  warning: deletes {len(deleted)} key(s), whose clients will get 401: {', '.join(deleted)}")
    for k in kept:
        reason = KEPT_REASONS.get(str(k.get("reason")), str(k.get("reason")))
        lines.append(f"  keeps ApiKey/{k.get('name')} as it is (would {k.get('op')}: {reason})")
    return lines


def rollback(
    to: Annotated[int, typer.Option("--to", min=0, help="The revision whose policy to restore (0: empty)")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts)")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would change")] = False,
    include_keys: Annotated[bool, typer.Option(
        "--include-keys", help="Roll keys back too (deleting keys created since); revoked or rotated-out "
        "secrets are never restored")] = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
    as_: AsOpt = None,
) -> None:
    """Restore the policy as of revision REV (recorded as a new revision), after showing what it changes."""
    with exit_on_error():
        client = connect(control_plane, admin_token)
        plan = client.rollback(to, who(as_), dry_run=True, include_keys=include_keys)
        for line in rollback_lines(to, plan):
            print(line)
        if dry_run or not plan.get("changes"):
            if not dry_run:
                print("nothing to roll back")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("not rolling back: confirmation needed and stdin is not a terminal; "
                                 "pass --yes to roll back without asking")
            if not typer.confirm("Proceed?", default=False):
                print("rollback cancelled; nothing was changed", file=sys.stderr)
                raise typer.Exit(int(ExitCode.OK))
        # Guarded by the revision shown: if the policy changed meanwhile, nothing is written (409).
        answer = client.rollback(to, who(as_), include_keys=include_keys, expected_revision=plan.get("revision"))
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
