"""The replay part of ``gatectl plan --replay``: the window option, the ``--fail-on`` checks, and the report as a
table (a terminal) or Markdown (a pull-request comment).

Pure over the report (``controlplane.replay.report``'s JSON): nothing here talks to the control plane.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cli.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_WINDOW_S = 366 * 86_400
_CHECK = re.compile(r"^\s*([a-z]+)\s*(>=|<=|>|<|==)\s*(-?\d+(?:\.\d+)?)\s*$")
# What a --fail-on check may name: counts of requests, or the cost delta in USD per day.
METRICS = ("refusals", "moved", "allowed", "changes", "cost")


def parse_window(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``2w``: the replay window in seconds; ``UsageError`` naming the option."""
    found = _DURATION.match(text)
    if not found or int(found.group(1)) == 0:
        raise UsageError(f"--replay: expected a duration like 7d, 12h or 30m, got {text!r}")
    seconds = int(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds > MAX_WINDOW_S:
        raise UsageError(f"--replay: at most 366 days, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Check:
    metric: str
    op: str
    threshold: Decimal

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold}"


def parse_checks(texts: Sequence[str]) -> list[Check]:
    """``refusals>0``, ``moved>=100``, ``cost>50`` (USD/day more): the ``--fail-on`` conditions."""
    out = []
    for text in texts:
        found = _CHECK.match(text)
        if not found or found.group(1) not in METRICS:
            raise UsageError(f"--fail-on: expected METRIC>N with METRIC one of {', '.join(METRICS)} "
                             f"(e.g. refusals>0), got {text!r}")
        out.append(Check(found.group(1), found.group(2), Decimal(found.group(3))))
    return out


def metric(report: Mapping[str, Any], name: str) -> Decimal:
    changes = report.get("changes") or {}
    if name == "cost":
        return Decimal(str((report.get("cost") or {}).get("deltaPerDayUsd", "0")).replace("$", ""))
    if name == "changes":
        return Decimal(sum(int(v) for v in changes.values()))
    return Decimal(int(changes.get("refused" if name == "refusals" else name, 0)))


def failed_checks(report: Mapping[str, Any], checks: Sequence[Check]) -> list[str]:
    """The checks that hold for ``report`` (each one fails the command), as ``refusals=3 (>0)``."""
    out = []
    for c in checks:
        value = metric(report, c.metric)
        holds = {">": value > c.threshold, ">=": value >= c.threshold, "<": value < c.threshold,
                 "<=": value <= c.threshold, "==": value == c.threshold}[c.op]
        if holds:
            out.append(f"{c.metric}={value} ({c.op}{c.threshold})")
    return out


BAR_WIDTH = 30


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#########.....]  60% 600,000/1,000,000 requests``: the replay's progress line on a terminal."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(width * fraction)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {done:,}/{total:,} requests"


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _per_day(value: Any) -> str:
    return f"{float(value):,.1f}/day"


def _rows(report: Mapping[str, Any]) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    refused = [[r["tenant"], r["key"], r["reason"], _n(r["requests"]), _per_day(r["perDay"])]
               for r in report.get("refused") or []]
    allowed = [[r["tenant"], r["key"], r["was"], _n(r["requests"]), _per_day(r["perDay"])]
               for r in report.get("allowed") or []]
    moved = [[m["tenant"], f"{m['from']} ({m['fromProvider']})", f"{m['to']} ({m['toProvider']})",
              _n(m["requests"]), _per_day(m["perDay"]), f"{m['costDeltaPerDayUsd']}/day"]
             for m in report.get("moved") or []]
    return refused, allowed, moved


_HEADS = (["TENANT", "KEY", "REASON", "REQUESTS", "RATE"], ["TENANT", "KEY", "WAS REFUSED", "REQUESTS", "RATE"],
          ["TENANT", "FROM", "TO", "REQUESTS", "RATE", "COST"])
_TITLES = ("Would now be refused", "Would now be allowed", "Would move to another deployment")


def _headline(report: Mapping[str, Any]) -> str:
    window = report.get("window") or {}
    reproduced = report.get("reproduced") or {}
    cost = report.get("cost") or {}
    days = float(window.get("days", 0))
    amount, unit = (round(days, 1), "day") if days >= 1 else (round(days * 24, 1), "hour")
    span = f"{amount:g} {unit}{'' if amount == 1 else 's'}"
    return (f"Replayed {_n(report.get('requests', 0))} recorded requests of {span} "
            f"({_n(reproduced.get('matching', 0))} decided as recorded by the current policy); "
            f"cost {cost.get('deltaPerDayUsd', '+$0.00')}/day.")


def render_table(report: Mapping[str, Any]) -> str:
    lines = ["", _headline(report)]
    for title, head, rows in zip(_TITLES, _HEADS, _rows(report), strict=True):
        if not rows:
            continue
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines += ["", f"{title}:", "  " + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not any(_rows(report)):
        lines.append("No recorded request would be decided differently.")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = ["### Replay of recorded traffic", "", _headline(report)]
    for title, head, rows in zip(_TITLES, _HEADS, _rows(report), strict=True):
        if not rows:
            continue
        lines += ["", f"**{title}**", "", "| " + " | ".join(h.title() for h in head) + " |",
                  "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    if not any(_rows(report)):
        lines += ["", "No recorded request would be decided differently."]
    return "\n".join(lines) + "\n"
