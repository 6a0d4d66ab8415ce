"""The cost of Tollway's policy: the data plane against a bare proxy and the upstream itself, in one run.

Measures three things in the same run, each alone on CPU 0 while it is measured (the load generator, the fake
upstream and the control plane share CPU 1; the control plane, and the OTLP sink when tracing, under SCHED_IDLE,
as they run on machines of their own in production: see ``bench/harness/stack.py``): the upstream directly, a
bare reverse proxy (``bench/bare_proxy.py``: aiohttp + uvloop + orjson, no policy) and the Tollway data plane
with full policy (auth, budgets, rate limits, usage spool and shipping, request log, metrics; see
``bench/harness/stack.py``). For each:

- throughput at saturation (the highest connection count, no upstream delay), JSON and streaming;
- CPU time per request: the measured process's utime + stime (/proc/<pid>/stat, every thread) over a
  measurement, divided by the requests it completed;
- p50/p99 at each connection count (default 1, 4, 16, 64) with the upstream answering after a delay uniform
  over 10-30 ms (in golden-ratio order unless ``--random-delays``: see ``bench/fast_upstream.py``), and with no
  delay; for streams the latency is to the last chunk. Added latency = through a proxy minus directly, at the
  same percentile, in the same run;
- peak RSS (VmHWM of /proc/<pid>/status) over the whole session;
- then, ``--paired N`` rounds (default 3): the bare proxy and the data plane loaded at the same time at saturation,
  both on CPU 0, their CPU per request compared round by round. On a shared machine two measurements taken
  one after the other differ by 10-30 %; loaded together, both see the same slowdowns and the ratio holds
  still (an A/A pairing of two identical data planes agrees within 2 %).

Each run measures every cell for every target, one after the other (the order rotates from run to run), so a
change in the machine's load hits all three alike; ``--runs N`` repeats and the report gives median (min-max).
Delayed cells with fewer than 4 connections run proportionally longer (1 connection: 4x), so each gathers
about as many samples. The load generator is wrk (``bench/harness/wrk.py``): closed-loop keep-alive connections, each
sending its next request when the previous answer has ended, latency recorded per request in microseconds.

Output: a markdown report (tables for the README, ratios against the bare proxy, the targets of issue 13 with
pass/fail) on stdout and next to ``--output`` (JSON with every figure of every run); ``--from FILE`` re-renders
the report of a saved JSON. ``--profile [FILE]`` then records a py-spy profile of the data plane at saturation
(JSON then streaming), writes it as speedscope JSON and reports the top functions; it needs py-spy
(``.venv/bin/pip install py-spy``) and ptrace rights (root, or CAP_SYS_PTRACE).

    python -m bench.overhead [--runs 3] [--duration 5] [--connections 1,4,16,64] [--profile] [--quick]
    python -m bench.overhead --runs 0 --paired 4 --duration 3     # the paired CPU ratio alone, in a minute

Needs ``wrk`` (Debian: ``apt-get install wrk``) and ``taskset`` (util-linux), and 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import relay_floor
from bench.fast_upstream import DELAYED_SUFFIX, parse_delay_ms
from bench.harness import cpu_profile, wrk
from bench.harness.overhead_report import Mode, Target, cell_name, markdown
from bench.harness.stack import (
    ROOT,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    Processes,
    cpu_busy_seconds,
    cpu_seconds,
    free_port,
    peak_rss_mb,
    runs_compiled,
    start_gateway,
    start_otlp_sink,
)

MODES: tuple[Mode, ...] = ("json", "stream")
PROMPT = [{"role": "user", "content": "Say something short."}]


@dataclass(frozen=True)
class Endpoint:
    """One thing measured: where to send chat completions, with which headers, and whose CPU they cost."""

    target: Target
    url: str
    headers: dict[str, str]
    pid: int

    def body(self, mode: Mode, delayed: bool) -> dict[str, Any]:
        if self.target == "tollway":
            body: dict[str, Any] = {"model": "bench-delayed" if delayed else "bench"}
        else:
            body = {"model": UPSTREAM_MODEL + (DELAYED_SUFFIX if delayed else "")}
        body |= {"messages": PROMPT, "max_tokens": 64}
        if mode == "stream":
            body["stream"] = True
            if self.target != "tollway":  # what the data plane asks of the upstream, so all get the same answer
                body["stream_options"] = {"include_usage": True}
        return body


@dataclass(frozen=True)
class Cell:
    mode: Mode
    delayed: bool
    connections: int

    @property
    def name(self) -> str:
        return cell_name(self.mode, self.delayed, self.connections)

    def duration_s(self, base: int) -> int:
        return base * max(1, 4 // self.connections) if self.delayed else base


class Bench:
    """The endpoints, their wrk scripts, and the measurements of one session."""

    def __init__(self, endpoints: list[Endpoint], upstream_pid: int, work: Path, duration_s: int) -> None:
        self.endpoints = endpoints
        self.upstream_pid = upstream_pid
        self.duration_s = duration_s
        self.settle_s = min(1.0, duration_s / 4)  # lets the usage shipper and the control plane catch up
        self._scripts = {
            (e.target, mode, delayed): wrk.write_script(work / f"{e.target}-{mode}-{delayed}.lua",
                                                        e.body(mode, delayed), e.headers)
            for e in endpoints for mode in MODES for delayed in (False, True)
        }

    def load(self, e: Endpoint, mode: Mode, delayed: bool, connections: int, duration_s: int) -> wrk.Load:
        return wrk.run(e.url, self._scripts[(e.target, mode, delayed)], connections, duration_s)

    def measure(self, e: Endpoint, cell: Cell) -> dict[str, float]:
        cpu, upstream_cpu, cpu0 = cpu_seconds(e.pid), cpu_seconds(self.upstream_pid), cpu_busy_seconds(0)
        start = time.monotonic()
        load = self.load(e, cell.mode, cell.delayed, cell.connections, cell.duration_s(self.duration_s))
        wall = time.monotonic() - start
        cpu, upstream_cpu = cpu_seconds(e.pid) - cpu, cpu_seconds(self.upstream_pid) - upstream_cpu
        # CPU 0 should run nothing but the measured proxy: what else ran there is other people's load.
        others = cpu_busy_seconds(0) - cpu0 - (cpu if e.target != "direct" else 0.0)
        n = max(load.requests, 1)
        return {"requests": load.requests, "rps": round(load.rps, 1), "p50_ms": load.p50_ms, "p90_ms": load.p90_ms,
                "p99_ms": load.p99_ms, "max_ms": load.max_ms, "errors": load.errors,
                "cpu_ms_per_request": round(cpu * 1000 / n, 4),
                "upstream_cpu_ms_per_request": round(upstream_cpu * 1000 / n, 4),
                "cpu0_others_pct": round(max(0.0, others) * 100 / wall, 1)}

    def warm_up(self) -> None:
        for e in self.endpoints:
            for mode in MODES:
                self.load(e, mode, False, 8, 2)

    def run(self, cells: list[Cell], rotation: int) -> dict[str, dict[str, dict[str, float]]]:
        order = self.endpoints[rotation % 3:] + self.endpoints[:rotation % 3]
        results: dict[str, dict[str, dict[str, float]]] = {e.target: {} for e in self.endpoints}
        for cell in cells:
            for e in order:
                m = results[e.target][cell.name] = self.measure(e, cell)
                print(f"  {cell.name:18} {e.target:8} {m['rps']:>9,.0f} req/s  p50 {m['p50_ms']:7.3f}  "
                      f"p99 {m['p99_ms']:7.3f} ms  cpu {m['cpu_ms_per_request']:.3f} ms/req  "
                      f"others on CPU 0 {m['cpu0_others_pct']:.0f}%"
                      + (f"  {m['errors']:.0f} ERRORS" if m["errors"] else ""), file=sys.stderr)
                time.sleep(self.settle_s)
        return results


    def paired(self, bare: Endpoint, tollway: Endpoint, rounds: int, connections: int) -> dict[str, list[float]]:
        """CPU per request of the bare proxy and the data plane loaded at the same time, both on CPU 0, at
        saturation: whatever else slows the machine (a neighbour on the host, frequency) slows both alike,
        so their ratio holds still where two measurements taken one after the other differ by 10-30 %.
        Returns the ratio (Tollway over bare) of each round, per mode."""
        out: dict[str, list[float]] = {mode: [] for mode in MODES}
        with ThreadPoolExecutor(2) as pool:
            for _ in range(rounds):
                for mode in MODES:
                    before = [cpu_seconds(e.pid) for e in (bare, tollway)]
                    loads = [f.result() for f in [pool.submit(self.load, e, mode, False, connections, self.duration_s)
                                                  for e in (bare, tollway)]]
                    cpu = [(cpu_seconds(e.pid) - b) / max(load.requests, 1)
                           for e, b, load in zip((bare, tollway), before, loads, strict=True)]
                    out[mode].append(round(cpu[1] / cpu[0], 3))
                    print(f"  paired {mode:6} bare {cpu[0] * 1000:.3f}  tollway {cpu[1] * 1000:.3f} ms/req  "
                          f"ratio {cpu[1] / cpu[0]:.2f}", file=sys.stderr)
                    time.sleep(self.settle_s)
        return out


def profile(bench: Bench, tollway: Endpoint, output: Path, connections: int) -> dict[str, Any] | None:
    seconds = 2 * bench.duration_s + 2
    before = cpu_profile.thread_cpu(tollway.pid)
    spy = cpu_profile.record(tollway.pid, seconds, output)
    time.sleep(1)  # attached before the load starts
    for mode in MODES:
        bench.load(tollway, mode, False, connections, bench.duration_s)
    _, err = spy.communicate(timeout=seconds + 30)
    after = cpu_profile.thread_cpu(tollway.pid)
    if spy.returncode != 0 or not output.exists():
        print(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-2000:]}", file=sys.stderr)
        return None
    return {"path": str(output), "seconds": seconds, **cpu_profile.summarize(output, before, after)}


def render(results: dict[str, Any]) -> str:
    text = markdown(results) if results["runs"] else ""  # ``--runs 0``: the paired measurement alone
    if results.get("paired_cpu_ratio"):
        text += "\n" + paired_markdown(results["paired_cpu_ratio"])
    if results.get("profile"):
        text += "\n" + cpu_profile.render(results["profile"])
    return text


def paired_markdown(ratios: dict[str, list[float]]) -> str:
    """The paired measurement's ratios: median (min-max) per mode."""
    rows = []
    for mode, values in ratios.items():
        if values:
            ordered = sorted(values)
            rows.append(f"| {'JSON' if mode == 'json' else 'streaming'} | {len(values)} | "
                        f"**{statistics.median(ordered):.2f}\u00d7** ({ordered[0]:.2f}\u2013{ordered[-1]:.2f}) |")
    return ("CPU per request, Tollway over the bare proxy, both loaded at once on CPU 0 at saturation (the "
            "machine's noise hits both alike):\n\n| | rounds | ratio, median (min\u2013max) |\n|---|---:|---:|\n"
            + "\n".join(rows) + "\n")


def git_describe() -> str:
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3,
                        help="repetitions of the whole matrix (default 3; 0: only the paired measurement)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per cell (default 5)")
    parser.add_argument("--connections", default="1,4,16,64",
                        help="connection counts, comma-separated; the highest is the saturation point")
    parser.add_argument("--delay-ms", default="10-30", help="the delayed upstream's uniform range (default 10-30)")
    parser.add_argument("--random-delays", action="store_true",
                        help="draw the delays at random rather than in golden-ratio order (bench/fast_upstream.py)")
    parser.add_argument("--trace-sampling", type=float, default=None, metavar="RATIO",
                        help="trace the data plane's requests at this ratio, exported over OTLP/HTTP to a sink on "
                        "CPU 1 (bench/harness/otlp_sink.py); default: tracing off")
    parser.add_argument("--dataplane-arg", action="append", default=[],
                        help="an argument for gatectl dataplane serve (repeatable), e.g. "
                        "--dataplane-arg=--no-fast-path")
    parser.add_argument("--workers", type=int, default=1,
                        help="data plane worker processes (gatectl dataplane serve --workers; default 1); with more "
                        "than one they run on CPUs 0..N-1 and CPU per request sums the supervisor and its workers")
    parser.add_argument("--paired", type=int, default=3, metavar="ROUNDS",
                        help="rounds of the paired CPU measurement (bare proxy and data plane loaded at once; "
                        "default 3, 0: none)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 run, 1 s per cell, 1 and 64 connections")
    parser.add_argument("--profile", nargs="?", type=Path, default=None,
                        const=ROOT / "bench" / "results" / "dataplane.speedscope.json",
                        help="write a py-spy profile of the data plane (speedscope JSON)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "overhead.json")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="only render the report of a saved results JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.connections = 1, 1, "1,64"
    args.connections = sorted({int(c) for c in args.connections.split(",")})
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.source:
        print(render(json.loads(args.source.read_text())), end="")
        return
    for tool, package in (("wrk", "wrk"), ("taskset", "util-linux")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: apt-get install {package})")
    if args.profile and cpu_profile.py_spy() is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    cells = [Cell(mode, delayed, c) for mode in MODES for delayed in (True, False) for c in args.connections]
    meta: dict[str, Any] = {
        "command": " ".join(["python -m bench.overhead", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_describe(),
        "duration_s": args.duration, "delay_ms": args.delay_ms.replace("-", "\u2013"),
        "delay_order": "random" if args.random_delays else "golden-ratio sequence",
        "load_average_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="tollway-overhead-") as tmp, ExitStack() as stack:
        procs = Processes(stack, Path(tmp))
        # The standard loop's timers are precise to well under a millisecond; uvloop's would absorb the
        # proxies' added time into a whole-millisecond grid (see bench/fast_upstream.py).
        tracing: list[str] = []
        sink_url = ""
        if args.trace_sampling is not None:
            sink_url = start_otlp_sink(procs)
            tracing = [f"--otlp-endpoint={sink_url}", f"--trace-sampling={args.trace_sampling:g}"]
            meta["trace_sampling"] = args.trace_sampling
        gateway = start_gateway(procs, ["--loop", "asyncio", "--delay-ms", args.delay_ms, "--delay-order",
                                        "random" if args.random_delays else "even"], [*tracing, *args.dataplane_arg],
                                args.workers)
        meta["dataplane_args"] = args.dataplane_arg
        meta["workers"] = args.workers
        meta["compiled"] = runs_compiled(gateway.dataplane.pid)  # the mypyc build (dataplane/compiled.py) or source
        bare_port = free_port()
        bare = procs.spawn("0", [sys.executable, "-m", "bench.bare_proxy", "--port", str(bare_port),
                                 "--upstream", gateway.upstream_url], "bare_proxy")
        bare_url = f"http://127.0.0.1:{bare_port}/v1"
        procs.wait_ready(bare, f"http://127.0.0.1:{bare_port}/healthz")
        endpoints = [
            Endpoint("direct", gateway.upstream_url + "/chat/completions",
                     {"Authorization": f"Bearer {UPSTREAM_KEY}"}, gateway.upstream.pid),
            Endpoint("bare", bare_url + "/chat/completions", {"Authorization": "Bearer unchecked"}, bare.pid),
            Endpoint("tollway", gateway.url + "/chat/completions", {"Authorization": f"Bearer {gateway.key}"},
                     gateway.dataplane.pid),
        ]
        bench = Bench(endpoints, gateway.upstream.pid, Path(tmp), args.duration)
        bench.warm_up()
        floor = relay_floor.measure(300, parse_delay_ms(args.delay_ms))
        meta["relay_floor"] = {"added_p50_ms": round(floor.added_p50_ms, 3),
                               "added_p99_ms": round(floor.added_p99_ms, 3)}
        print(f"relay floor: added p50 {floor.added_p50_ms:.3f} ms, p99 {floor.added_p99_ms:.3f} ms", file=sys.stderr)
        runs = []
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", file=sys.stderr)
            runs.append(bench.run(cells, i))
            meta.setdefault("load_average_after_each_run", []).append([round(x, 2) for x in os.getloadavg()])
        paired = bench.paired(endpoints[1], endpoints[2], args.paired, max(args.connections)) if args.paired else {}
        meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        if sink_url:
            time.sleep(6)  # the exporter's batch interval (5 s), so the last spans arrive
            with urllib.request.urlopen(sink_url + "/stats", timeout=5) as answer:
                meta["traces_exported"] = json.loads(answer.read())
        results: dict[str, Any] = {
            "meta": meta, "connections": args.connections, "runs": runs,
            "peak_rss_mb": {e.target: round(peak_rss_mb(e.pid), 1) for e in endpoints},
            "paired_cpu_ratio": paired,
        }
        if args.profile:
            results["profile"] = profile(bench, endpoints[2], args.profile, max(args.connections))
    report = render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(report)
    print(report, end="")
    print(f"(written to {args.output} and {args.output.with_suffix('.md')})", file=sys.stderr)


if __name__ == "__main__":
    main()
