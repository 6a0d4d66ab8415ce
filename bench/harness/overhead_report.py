"""The overhead benchmark's results as markdown: figures with their spread, ratios, and the targets of issue 13.

Pure: everything here reads the results document ``bench.overhead`` writes (also re-rendered from a saved file
with ``--from``). A figure over several runs is shown as ``median (min-max)``. Added latency is the figure
through a proxy minus the upstream's figure directly, at the same percentile, in the same cell of the same run;
ratios against the bare proxy are also taken run by run, then summarized. A target passes on the median.

Results document: ``runs`` is a list with one entry per run: ``{target: {cell: measurement}}``, targets
``direct``, ``bare`` and ``tollway``, cells named by ``cell_name``, a measurement holding ``rps``, ``p50_ms``,
``p99_ms``, ``cpu_ms_per_request``, ``requests`` and ``errors``; ``peak_rss_mb`` is ``{target: MB}``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Typographic characters of the markdown, escaped so that the source stays ASCII (ruff's RUF001).
TIMES, DASH = "\u00d7", "\u2013"
Mode = Literal["json", "stream"]
Target = Literal["direct", "bare", "tollway"]
TARGETS: tuple[Target, ...] = ("direct", "bare", "tollway")
LABELS: dict[Target, str] = {"direct": "upstream directly", "bare": "bare aiohttp proxy (`bench/bare_proxy.py`)",
                             "tollway": "Tollway data plane, full policy"}
MODE_LABELS: dict[Mode, str] = {"json": "JSON", "stream": "streaming, to last chunk"}


def cell_name(mode: Mode, delayed: bool, connections: int) -> str:
    return f"{mode}/{'delayed' if delayed else 'nodelay'}/{connections}"


@dataclass(frozen=True)
class Spread:
    low: float
    median: float
    high: float

    @staticmethod
    def of(values: Sequence[float]) -> Spread:
        return Spread(min(values), statistics.median(values), max(values))

    def show(self, fmt: str = ".2f", suffix: str = "") -> str:
        if self.low == self.high:
            return f"{self.median:{fmt}}{suffix}"
        return f"{self.median:{fmt}}{suffix} ({self.low:{fmt}}{DASH}{self.high:{fmt}})"


class Figures:
    """Derived figures of one results document."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.runs: list[dict[str, dict[str, dict[str, float]]]] = results["runs"]
        self.connections: list[int] = results["connections"]
        self.saturation = max(self.connections)

    def measured(self, target: Target, cell: str, field: str) -> Spread:
        return Spread.of([run[target][cell][field] for run in self.runs])

    def added(self, target: Target, cell: str, field: str) -> Spread:
        return Spread.of([run[target][cell][field] - run["direct"][cell][field] for run in self.runs])

    def ratio(self, cell: str, field: str) -> Spread:
        """Tollway over the bare proxy, run by run."""
        return Spread.of([run["tollway"][cell][field] / run["bare"][cell][field] for run in self.runs])

    def saturation_cell(self, mode: Mode) -> str:
        return cell_name(mode, False, self.saturation)

    def rss(self, target: Target) -> float:
        return float(self.results["peak_rss_mb"][target])

    def others_on_cpu0(self) -> Spread:
        """How busy other processes kept CPU 0 while a proxy was measured there, in percent."""
        return Spread.of([m.get("cpu0_others_pct", 0.0) for run in self.runs for target, cells in run.items()
                          if target != "direct" for m in cells.values()])

    def errors(self) -> int:
        return int(sum(m["errors"] for run in self.runs for cells in run.values() for m in cells.values()))


def throughput_table(f: Figures) -> list[str]:
    lines = [f"Saturation: {f.saturation} connections, no upstream delay. CPU is the measured process's own "
             "(the upstream's for the direct row; the proxy's, not the upstream's, for the others).", "",
             "| | JSON req/s | streaming req/s | JSON CPU ms/request | streaming CPU ms/request | peak RSS |",
             "|---|---:|---:|---:|---:|---:|"]
    for target in TARGETS:
        cells = []
        for field, fmt in (("rps", ",.0f"), ("cpu_ms_per_request", ".3f")):
            for mode in ("json", "stream"):
                cell = f.saturation_cell(mode)
                text = f.measured(target, cell, field).show(fmt)
                if target == "tollway":
                    text += f" · **{f.ratio(cell, field).show('.2f', TIMES)}**"
                cells.append(text)
        lines.append(f"| {LABELS[target]} | {' | '.join(cells)} | {f.rss(target):.0f} MB |")
    return lines


def latency_table(f: Figures, delayed: bool) -> list[str]:
    lines = ["| | connections | upstream directly p50 / p99 | bare proxy added p50 | Tollway added p50 "
             "| bare proxy added p99 | Tollway added p99 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for mode in ("json", "stream"):
        for conns in f.connections:
            cell = cell_name(mode, delayed, conns)
            p50, p99 = (f.measured("direct", cell, p).median for p in ("p50_ms", "p99_ms"))
            direct = f"{p50:.2f} / {p99:.2f}"
            added = [f.added(t, cell, p).show() for p in ("p50_ms", "p99_ms") for t in ("bare", "tollway")]
            lines.append(f"| {MODE_LABELS[mode]} | {conns} | {direct} | {' | '.join(added)} |")
    return lines


Unit = Literal["ratio", "ms", "MB"]
_FORMATS: dict[Unit, tuple[str, str]] = {"ratio": (".2f", TIMES), "ms": (".2f", " ms"), "MB": (".0f", " MB")}


@dataclass(frozen=True)
class Check:
    """One target of issue 13: Tollway's worst cell (by median) against ``bound`` (the bare proxy's, beside it)."""

    name: str
    comparison: Literal["≤", "≥"]
    bound: float
    unit: Unit
    tollway: Spread
    bare: Spread | None
    where: str

    @property
    def passed(self) -> bool:
        return self.tollway.median <= self.bound if self.comparison == "≤" else self.tollway.median >= self.bound

    def show(self, spread: Spread) -> str:
        fmt, suffix = _FORMATS[self.unit]
        return spread.show(fmt, suffix)


def _worst_added(f: Figures, target: Target, cells: Sequence[str], field: str) -> tuple[Spread, str]:
    return max(((f.added(target, c, field), c) for c in cells), key=lambda sc: sc[0].median)


def checks(f: Figures) -> list[Check]:
    out: list[Check] = []
    for mode in ("json", "stream"):
        cell, label = f.saturation_cell(mode), MODE_LABELS[mode].split(",")[0]
        out.append(Check(f"CPU per request, {label}", "≤", 1.0, "ratio", f.ratio(cell, "cpu_ms_per_request"), None,
                         cell))
        out.append(Check(f"throughput, {label}", "≥", 1.0, "ratio", f.ratio(cell, "rps"), None, cell))

    def latency(name: str, mode: Mode, conns: Sequence[int], field: str, bound: float, no_delay_one: bool) -> None:
        cells = [cell_name(mode, True, c) for c in conns]
        if no_delay_one and 1 in f.connections:
            cells.append(cell_name(mode, False, 1))
        if cells:
            worst, where = _worst_added(f, "tollway", cells, field)
            out.append(Check(name, "≤", bound, "ms", worst, _worst_added(f, "bare", cells, field)[0], where))

    low = [c for c in f.connections if c <= 16]
    high = [c for c in f.connections if c > 16]
    for conns, bound in ((low, 1.0), (high, 2.0)):
        if conns:
            latency(f"added p99, JSON, {'/'.join(map(str, conns))} connections, upstream delayed", "json", conns,
                    "p99_ms", bound, False)
    latency("added p50, JSON: every connection count delayed, and 1 without delay", "json", f.connections,
            "p50_ms", 0.3, True)
    latency("added p50, streaming to last chunk: same cells", "stream", f.connections, "p50_ms", 0.5, True)
    rss = f.rss("tollway")
    out.append(Check("peak RSS (VmHWM)", "≤", 80, "MB", Spread(rss, rss, rss), Spread.of([f.rss("bare")]),
                     "whole session"))
    return out


def checks_table(f: Figures) -> list[str]:
    lines = ["| target (issue 13) | bound | Tollway | bare proxy | worst cell | |", "|---|---|---:|---:|---|---|"]
    for c in checks(f):
        bare = c.show(c.bare) if c.bare else "—"
        bound = f"{c.comparison} {c.bound:g}{_FORMATS[c.unit][1]}" + (" bare" if c.unit == "ratio" else "")
        lines.append(f"| {c.name} | {bound} | {c.show(c.tollway)} | {bare} | `{c.where}` | "
                     f"{'pass' if c.passed else '**FAIL**'} |")
    return lines


def floor_note(meta: dict[str, Any]) -> list[str]:
    """What a relay that does no work adds on this machine (``bench/relay_floor.py``), under the p50 targets."""
    floor = meta.get("relay_floor")
    if not floor:
        return []
    return [f"The machine's floor (`bench/relay_floor.py`, one connection, upstream after {meta['delay_ms']} ms): a "
            f"relay that does no work, on CPU 0 like the proxies, adds p50 **{floor['added_p50_ms']:.2f} ms**, p99 "
            f"{floor['added_p99_ms']:.2f} ms: a request through any proxy wakes CPU 0 after it idled through the "
            "upstream's delay, and crosses CPUs four times, where directly the client and the upstream share CPU 1.",
            ""]


def markdown(results: dict[str, Any]) -> str:
    f = Figures(results)
    meta = results["meta"]
    others = f.others_on_cpu0()
    loads = " → ".join(str(la[0]) for la in [meta["load_average_start"], *meta.get("load_average_after_each_run", [])])
    head = [
        f"- `{meta['command']}` — {meta['date']}, commit {meta['commit']}; {len(f.runs)} run(s), "
        f"{meta['duration_s']} s per cell.",
        f"- Machine: {meta.get('cpus', '?')} CPUs; 1-minute load average {loads} (start, then after each run); "
        f"other processes kept CPU 0 busy {others.median:.0f}% of the time while a proxy was measured there "
        f"(median; worst {others.high:.0f}%).",
        "- The data plane or proxy alone on CPU 0; the upstream, the load generator (wrk) and the control plane on "
        "CPU 1.",
        *([f"- The data plane's request path {'compiled (mypyc' if meta['compiled'] else 'from source (no'} build "
           "of `dataplane/compiled.py`)."] if "compiled" in meta else []),
        f"- Figures: median (min{DASH}max) over the runs. Added latency = through the proxy minus directly, at the "
        "same percentile, in the same run; ratios are Tollway over the bare proxy, run by run.",
        *([f"- Tracing on at a sampling ratio of {meta['trace_sampling']:g}, exported over OTLP/HTTP to a sink on "
           f"CPU 1 ({meta.get('traces_exported', {}).get('spans', '?')} spans received)."]
          if "trace_sampling" in meta else []), ""]
    body = [*throughput_table(f), "",
            f"Added latency, ms, upstream answering after {meta['delay_ms']} ms (uniform, "
            f"{meta.get('delay_order', 'random')}):", "",
            *latency_table(f, True), "",
            "Added latency, ms, upstream answering at once (at high connection counts this is queueing on one "
            "core, not overhead):", "",
            *latency_table(f, False), "", *checks_table(f), "", *floor_note(meta)]
    if f.errors():
        body.append(f"**{f.errors()} failed requests** (socket errors, timeouts or non-2xx answers) over the runs.")
    return "\n".join(head + body) + "\n"
