"""``rollout status|promote|abort``: a staged rollout started by ``gatectl apply --canary``.

``status`` shows the rollout (who, when, which canary, its automatic rules), per region the version the canary
and the other data planes should run, per data plane the version it should run, the one it runs and its
ACK/NACK, and the canary's error rate and latency against the others' over the control plane's window.
``promote`` sends the canary's revision everywhere; ``abort`` returns the canary to the previous revision (a
new revision, keys kept as they are now). Both are recorded in the history and the audit chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cli.errors import exit_on_error
from cli.options import AdminTokenOpt, AsOpt, ControlPlaneOpt, OutputOpt, connect, who
from cli.render.output import OutputFormat, format_time, table, to_json

rollout_app = typer.Typer(help="Staged rollouts: status, promote, abort (start one with `apply --canary`)",
                          no_args_is_help=True)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the history and the audit chain)")]


def _rate(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _ms(value: object) -> str:
    return f"{value:+.0f} ms" if isinstance(value, int | float) else "-"


def status_lines(answer: Mapping[str, Any]) -> list[str]:
    """The human form of ``GET /admin/v1/rollout``."""
    r = answer.get("rollout")
    lines: list[str] = []
    if not isinstance(r, Mapping):
        lines.append("No rollout in progress.")
    else:
        canary = r.get("canary") or {}
        where = ", ".join([*(f"region {x}" for x in canary.get("regions") or []),
                           *(f"data plane {x}" for x in canary.get("dataplanes") or [])])
        lines.append(f"rollout {r.get('id')}: revision {r.get('targetRevision')} on the canary ({where}), "
                     f"revision {r.get('baseRevision')} elsewhere; started by {r.get('who')} "
                     f"{format_time(r.get('started'))}")
        rules = []
        if r.get("promoteAt") is not None:
            rules.append(f"promotes by itself at {format_time(r.get('promoteAt'))}")
        if r.get("abortIfErrorRateAbove") is not None:
            above = _rate(r['abortIfErrorRateAbove'])
            rules.append(f"aborts if the canary's error rate exceeds the others' by {above}")
        rules.append("aborts on a NACK from a canary data plane")
        lines.append("  " + "; ".join(rules))
        t = answer.get("traffic")
        if isinstance(t, Mapping):
            c, o = t.get("canary") or {}, t.get("others") or {}
            lines.append(f"  last {t.get('windowSeconds', 0):.0f}s: canary {c.get('requests', 0)} requests, error rate "
                         f"{_rate(c.get('errorRate'))}; others {o.get('requests', 0)} requests, error rate "
                         f"{_rate(o.get('errorRate'))}; added latency (p50) {_ms(t.get('addedLatencyMs'))}")
    regions = [g for g in answer.get("regions") or [] if isinstance(g, Mapping)]
    if regions:
        lines.append("")
        lines.append(table(("REGION", "CANARY VERSION", "OTHERS VERSION"),
                           [[str(g.get("region")), str(g.get("canaryVersion") or "-"),
                             str(g.get("othersVersion") or "-")] for g in regions]))
    dps = [d for d in answer.get("dataplanes") or [] if isinstance(d, Mapping)]
    if dps:
        lines.append("")
        rows = [[str(d.get("nodeId")), str(d.get("region")), "yes" if d.get("canary") else "no",
                 str(d.get("targetVersion") or "-"), str(d.get("runningVersion") or "-"),
                 f"{d.get('status')}: {d['error']}" if d.get("error") else str(d.get("status")),
                 "yes" if d.get("connected") else "no"] for d in dps]
        lines.append(table(("NODE", "REGION", "CANARY", "TARGET", "RUNNING", "STATUS", "CONNECTED"), rows))
    return lines


@rollout_app.command()
def status(output: OutputOpt = OutputFormat.table, control_plane: ControlPlaneOpt = None,
           admin_token: AdminTokenOpt = None) -> None:
    """The rollout in progress: versions per region and data plane, ACK/NACK, the canary's error rate."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).rollout_status()
        if output in (OutputFormat.json, OutputFormat.yaml):
            print(to_json(answer))
            return
        for line in status_lines(answer):
            print(line)


def _end(action: str, reason: str, control_plane: str | None, admin_token: str | None, as_: str | None) -> None:
    with exit_on_error():
        answer = connect(control_plane, admin_token).end_rollout(action, who(as_), reason)
        r = answer.get("rollout") or {}
        events = r.get("events") or []
        last = events[-1] if events else {}
        versions = last.get("versions") or {}
        print(f"rollout {r.get('id')} {last.get('action', action)}: "
              + ("every data plane now gets revision " + str(r.get("targetRevision")) if action == "promote"
                 else f"the canary returns to the policy of revision {r.get('baseRevision')}"))
        for region, v in sorted(versions.items()):
            print(f"  {region}: canary ran {v.get('canary') or '-'}, others {v.get('others') or '-'}")


@rollout_app.command()
def promote(reason: ReasonOpt = "", control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
            as_: AsOpt = None) -> None:
    """Send the canary's revision to every data plane."""
    _end("promote", reason, control_plane, admin_token, as_)


@rollout_app.command()
def abort(reason: ReasonOpt = "", control_plane: ControlPlaneOpt = None, admin_token: AdminTokenOpt = None,
          as_: AsOpt = None) -> None:
    """Return the canary to the previous revision (recorded as a new revision)."""
    _end("abort", reason, control_plane, admin_token, as_)
