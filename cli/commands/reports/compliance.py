"""``gatectl compliance report``: the Markdown compliance report the control plane computes from the policy.

Exit status 0 (the report was produced, findings or not); with ``--strict``, 1 when it flags a problem (for CI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import ExitCode, UsageError, exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect

compliance_app = typer.Typer(help="Compliance: providers, regions, DPAs, logging and retention.",
                             no_args_is_help=True)


@compliance_app.command("report")
def report(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the Markdown here [default: stdout]")]
    = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a problem is flagged")] = False,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Which providers each tenant's data may reach, where, their DPA and retention; logging and usage retention."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).compliance_report()
        markdown = str(answer.get("markdown") or "")
        if output is None:
            sys.stdout.write(markdown)
        else:
            try:
                output.write_text(markdown, encoding="utf-8")
            except OSError as e:
                raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
            print(f"compliance report for revision {answer.get('revision')} written to {output}", file=sys.stderr)
    problems = [f for f in answer.get("findings") or [] if isinstance(f, dict) and f.get("severity") == "problem"]
    for f in problems:
        print(f"problem: {f.get('message')}", file=sys.stderr)
    if strict and problems:
        raise typer.Exit(int(ExitCode.CHANGES))
