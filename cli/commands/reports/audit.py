"""``gatectl audit``: every policy change (who, when, revision, what changed), checked against its hash chain.

The listing verifies the chain on every call (the control plane does it over the whole log). Exit status:
0 the chain is intact, 1 it is broken (the listing is still printed; the first bad revision is named on
stderr), others as in ``cli.errors``. ``gatectl audit verify`` checks without listing and prints the head hash,
to be recorded elsewhere; ``--expect HASH`` later checks that a recorded head is still part of the chain.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated, Any

import typer

from cli.errors import ExitCode, exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect
from cli.render.output import rollout_step, table, to_json

# Like ``diff``'s "there are changes": a finding, not a failure to run.
BROKEN = ExitCode.CHANGES

audit_app = typer.Typer(help="The tamper-evident log of policy changes.", no_args_is_help=False)


class AuditFormat(enum.StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[AuditFormat, typer.Option("--output", "-o", help="Output format")]


@audit_app.callback(invoke_without_command=True)
def audit(
    ctx: typer.Context,
    diff: Annotated[bool, typer.Option("--diff", help="Show the diff of every change")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the newest N revisions")] = None,
    output: OutputOpt = AuditFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Every policy change, newest first; exits 1 when the hash chain is broken."""
    if ctx.invoked_subcommand is not None:
        return
    with exit_on_error():
        query = {"diff": "true" if diff or output is AuditFormat.json else "false"}
        if limit is not None:
            query["limit"] = str(limit)
        answer = connect(control_plane, admin_token).audit(query)
        items = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        if output is AuditFormat.json:
            print(to_json(answer))
        elif diff:
            _print_diffs(items)
        elif items:
            print(table(["REVISION", "TIME", "WHO", "CHANGES"], [_row(i) for i in items]))
        else:
            print("No policy changes yet.", file=sys.stderr)
    _report(answer.get("verification"), quiet=output is AuditFormat.json)


@audit_app.command("verify")
def verify(
    expect: Annotated[str | None, typer.Option("--expect", help="A head hash recorded earlier, which must still "
                                                                 "be in the chain")] = None,
    output: OutputOpt = AuditFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Check the whole chain; print its head hash. Exits 1 when it is broken (naming the first bad revision)."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).audit_verify({"expect": expect} if expect else {})
    if output is AuditFormat.json:
        print(to_json(answer))
    found = answer.get("expectFound")
    if expect and found is False:
        print(f"error: the recorded head {expect} is not in the audit chain: the log was rewritten",
              file=sys.stderr)
        _report(answer.get("verification"), quiet=True)
        raise typer.Exit(int(BROKEN))
    _report(answer.get("verification"), quiet=output is AuditFormat.json, announce=True)


def _report(verification: object, *, quiet: bool, announce: bool = False) -> None:
    v = verification if isinstance(verification, dict) else {}
    broken = v.get("break")
    if isinstance(broken, dict):
        print(f"error: audit chain broken at revision {broken.get('revision')}: {broken.get('reason')}",
              file=sys.stderr)
        raise typer.Exit(int(BROKEN))
    if not v.get("ok"):
        print("error: the control plane did not report the audit chain's state", file=sys.stderr)
        raise typer.Exit(int(ExitCode.UNAVAILABLE))
    if announce and not quiet:
        unchained = f" ({v.get('unchained')} older entries predate the chain)" if v.get("unchained") else ""
        print(f"audit chain intact: {v.get('entries')} entries, head {v.get('head')}{unchained}")


def _row(item: dict[str, Any]) -> list[str]:
    if item.get("unreadable"):
        return [str(item.get("revision")), "-", "-", "(unreadable entry)"]
    changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
    summary = ", ".join(f"{c.get('kind')}/{c.get('name')} {_verb(c.get('op'))}" for c in changes[:3])
    if len(changes) > 3:
        summary += f", … ({len(changes)} changes)"
    step = rollout_step(item)  # a rollout's start, promotion or abort: which regions got which version
    if step is not None:
        summary = step + (f"; {summary}" if summary else "")
    return [str(item.get("revision")), str(item.get("time") or "-"), str(item.get("who") or "-"), summary or "-"]


def _verb(op: object) -> str:
    return {"create": "created", "update": "updated", "delete": "deleted"}.get(str(op), str(op))


def _print_diffs(items: list[dict[str, Any]]) -> None:
    for item in items:
        print(f"revision {item.get('revision')}  {item.get('time') or '-'}  by {item.get('who') or '-'}")
        for c in item.get("changes") or []:
            if isinstance(c, dict):
                sys.stdout.write(str(c.get("diff") or ""))
        print()
