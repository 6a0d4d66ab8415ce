"""``gatectl plan``: what the data planes of each region would receive if the files were applied.

Like ``diff``, the documents are validated locally first (nothing sent if one is wrong), then the control plane
validates them as an apply would and compiles the current and the proposed policy; nothing is written. The
answer is the structural diff of each region's snapshot (``controlplane.policy.plan``), shown as text
(``cli.render.plan_text``) or JSON. Exit 0: no region would change, 1: some would, >1: error (``cli.errors``).

``--replay 7d`` also has the control plane replay the window's recorded traffic through both policies
(``POST /admin/v1/replay``, ``controlplane.replay``): the report follows the plan (``cli.render.replay_text``: a
table, Markdown, or under ``"replay"`` in the JSON), a progress bar counts the requests on stderr when it is a
terminal, and ``--fail-on`` exits 5 (``CHECK_FAILED``) when one of its conditions holds.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer

from cli.commands.policy import FilesOpt, load_with_progress
from cli.errors import ExitCode, UsageError, exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, connect
from cli.render.output import to_json
from cli.render.plan_text import render_plan, tally
from cli.render.progress import Progress, count, summary
from cli.render.replay_text import (
    failed_checks,
    metric,
    parse_checks,
    parse_window,
    progress_bar,
    render_markdown,
    render_table,
)


class PlanFormat(enum.StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def fetch_plan(documents: Sequence[Mapping[str, Any]], control_plane: str | None, admin_token: str | None,
               progress: Progress) -> dict[str, Any]:
    """The control plane's plan of the documents (``POST /admin/v1/plan``); raises ``cli.errors`` like ``diff``."""
    with progress.waiting(f"planning {count(len(documents), 'document')} with the control plane"):
        answer = connect(control_plane, admin_token).plan(documents)
    progress.clear()
    return answer


def print_plan(answer: Mapping[str, Any], output: PlanFormat, replayed: Mapping[str, Any] | None = None) -> None:
    """The plan (and the replay's report, if any) as text, JSON (the replay under ``"replay"``) or Markdown."""
    if output is PlanFormat.json:
        sys.stdout.write(to_json(dict(answer) | ({"replay": dict(replayed)} if replayed is not None else {})) + "\n")
    elif output is PlanFormat.markdown:
        sys.stdout.write(f"### Plan\n\n```\n{render_plan(answer).strip()}\n```\n\n"
                         + (render_markdown(replayed) if replayed is not None else ""))
    else:
        sys.stdout.write(render_plan(answer) + (render_table(replayed) if replayed is not None else ""))


def fetch_replay(documents: Sequence[Mapping[str, Any]], control_plane: str | None, admin_token: str | None,
                 window_s: int, seed: int, progress: Progress) -> dict[str, Any]:
    """The control plane's replay of the window's recorded traffic (``POST /admin/v1/replay``), its progress
    shown on ``progress`` (a bar on a terminal, nothing otherwise)."""
    until_ms = int(time.time() * 1000)

    def shown(done: int, total: int) -> None:
        progress.update(f"replaying {progress_bar(done, total)}", force=done >= total)

    progress.update("replaying recorded traffic with the control plane", force=True)
    report = connect(control_plane, admin_token).replay(documents, until_ms - window_s * 1000, until_ms, seed, shown)
    progress.clear()
    return report


def plan(
    filename: FilesOpt,
    output: Annotated[PlanFormat, typer.Option("--output", "-o", help="Output format")] = PlanFormat.text,
    replay: Annotated[str | None, typer.Option(
        "--replay", help="Also replay the recorded traffic of this window (7d, 12h, 30m) through the current and "
                         "the proposed policy, and report what would be refused, moved and what it costs")] = None,
    fail_on: Annotated[list[str] | None, typer.Option(
        "--fail-on", help="With --replay: exit 5 if this holds, e.g. refusals>0, moved>=100, cost>50 (USD/day); "
                          "repeatable")] = None,
    seed: Annotated[int, typer.Option("--seed", help="With --replay: the weighted routes' draws")] = 0,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """Show what each region's data planes would receive if the files were applied (nothing is written).

    Per region: tenants, their residency (regions and providers their data may reach) and the order in which
    each route's deployments would be tried for them, budgets and rate limits, keys by name, routes,
    deployments and their prices, providers. Exit 0: no change, 1: changes, >1: error."""
    failed: list[str] = []
    with exit_on_error(), Progress() as progress:
        window_s = parse_window(replay) if replay is not None else None
        checks = parse_checks(fail_on or [])
        if checks and window_s is None:
            raise UsageError("--fail-on needs --replay (e.g. --replay 7d --fail-on refusals>0)")
        documents = [d.to_request() for d in load_with_progress(filename, progress)]
        answer = fetch_plan(documents, control_plane, admin_token, progress)
        replayed = fetch_replay(documents, control_plane, admin_token, window_s, seed, progress) \
            if window_s is not None else None
        print_plan(answer, output, replayed)
        regions = [r for r in answer.get("regions") or [] if isinstance(r, Mapping)]
        summary(f"plan: {tally(regions).removeprefix('Plan: ').rstrip('.')} in {progress.elapsed_s:.1f}s")
        if replayed is not None:
            failed = failed_checks(replayed, checks)
            for line in failed:
                summary(f"plan: --fail-on holds: {line}")
    if failed:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
    changed = answer.get("changed") or (replayed is not None and metric(replayed, "changes") > 0)
    raise typer.Exit(int(ExitCode.CHANGES if changed else ExitCode.OK))
