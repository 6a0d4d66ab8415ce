"""Data-plane variants side by side: what an option costs or buys, measured in one session.

``python -m bench.variants`` starts the bench stack once per variant (``bench/harness/stack.py``: the data plane
on CPU 0, or on CPUs 0..N-1 with ``--workers N``; upstream, control plane and wrk on CPU 1) and measures, for
each, rounds in turn (so a change in the machine's load hits every variant alike):

- saturation: 64 closed-loop connections, upstream answering at once: req/s and the data plane's CPU time per
  request (utime + stime of the process and its workers, /proc);
- the same load per worker: 64 connections *per worker* with the upstream answering after 10-30 ms, req/s and CPU
  per request. At saturation two workers on this 2-core machine serve what one does (the second shares CPU 1 with
  the upstream and wrk), so each runs at half the load of the one worker it is compared with, and an event loop at
  half load spends more per request (fewer requests per loop iteration); here each worker carries what the one
  worker carries (about a third of a core), so the figure compares what a worker costs, not how loaded it is;
- added latency: p50 and p99 at 1, 4 and 16 connections with the upstream answering after 10-30 ms, through the
  data plane minus directly (the upstream's own p50/p99 in the same round).

Variants (``--variants``, comma-separated names): ``default``; ``aiohttp`` (``--no-fast-path``: every request
through aiohttp's server); ``trace10`` and ``trace100`` (tracing at 10 % and 100 %, exported over OTLP/HTTP to a
sink on CPU 1), ``trace0`` (tracing on, nothing sampled: what the sampling decision costs); ``workers2``
(``--workers 2`` on both CPUs: CPU per request only, the latency cells share CPU 1); ``source``
(``TOLLWAY_COMPILED=0``: the request path run from source, not the mypyc build of ``dataplane/compiled.py``: what
the build buys); ``workers2cpu0`` (both workers on CPU 0, the CPU of the one-worker variants: what a second worker
costs per request, without the second worker's share of CPU 1 with the upstream and wrk, which is most of
``workers2``'s spread on a 2-core machine).

    python -m bench.variants [--rounds 3] [--duration 5] [--variants default,aiohttp,trace10,trace100,workers2]

``--paired N`` then measures each one-worker variant against the default *at the same time*: two data planes of
one stack, both on CPU 0, loaded together at saturation (JSON, 64 connections each), N rounds, their CPU per
request compared round by round. Measured one after the other, two cells differ by 10-30 % on a shared machine
(the cost of ``trace10`` read 0.99x to 1.87x that way); loaded together, both see the same slowdowns.

Needs ``wrk`` and ``taskset``. The median over rounds is printed as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.fast_upstream import DELAYED_SUFFIX
from bench.harness.stack import (
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    Processes,
    cpu_seconds,
    start_dataplane,
    start_gateway,
    start_otlp_sink,
)
from bench.harness.wrk import run, write_script

PROMPT = [{"role": "user", "content": "Say something short about benchmarks."}]
LATENCY_CONNECTIONS = (1, 4, 16)
CONNECTIONS_PER_WORKER = 64  # the same-load-per-worker cell: each worker's share of a delayed upstream's load
DASH = "\u2013"


@dataclass(frozen=True)
class Variant:
    name: str
    dataplane_args: tuple[str, ...] = ()
    trace_sampling: float | None = None
    workers: int = 1
    cpus: str | None = None  # taskset list for the data plane's workers (default: CPUs 0..workers-1)
    env: tuple[tuple[str, str], ...] = ()  # added to the data plane's environment


VARIANTS = {v.name: v for v in (
    Variant("default"), Variant("aiohttp", ("--no-fast-path",)), Variant("trace10", trace_sampling=0.1),
    Variant("trace100", trace_sampling=1.0), Variant("trace0", trace_sampling=0.0), Variant("workers2", workers=2),
    Variant("workers2cpu0", workers=2, cpus="0"), Variant("source", env=(("TOLLWAY_COMPILED", "0"),)))}


def variant_args(procs: Processes, variant: Variant) -> list[str]:
    """The data plane's arguments for ``variant`` (for tracing, an OTLP sink on CPU 1 started first)."""
    args = list(variant.dataplane_args)
    if variant.trace_sampling is not None:
        args += [f"--otlp-endpoint={start_otlp_sink(procs)}", f"--trace-sampling={variant.trace_sampling:g}"]
    return args


def paired(variant: Variant, rounds: int, duration: float) -> list[float]:
    """The CPU per request of ``variant`` over the default's, per round, both loaded at once on CPU 0."""
    ratios: list[float] = []
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollway-paired-")))
        procs = Processes(stack, work)
        args = variant_args(procs, variant)
        gateway = start_gateway(procs, ["--loop", "asyncio"])
        other, other_url = start_dataplane(procs, gateway.control_plane, "variant", args, env=dict(variant.env))
        script = write_script(work / "fast.lua", {"model": "bench", "messages": PROMPT, "max_tokens": 64},
                              {"Authorization": f"Bearer {gateway.key}"})
        pids, urls = (gateway.dataplane.pid, other.pid), (gateway.url, other_url)
        for url in urls:
            run(url + "/chat/completions", script, 64, 2)  # warm up
        for i in range(rounds):
            before = [cpu_seconds(pid) for pid in pids]
            loads = [f.result() for f in [pool.submit(run, url + "/chat/completions", script, 64, duration)
                                          for url in urls]]
            cpu = [(cpu_seconds(pid) - b) / max(load.requests, 1) for pid, b, load in zip(pids, before, loads,
                                                                                        strict=True)]
            ratios.append(round(cpu[1] / cpu[0], 3))
            print(f"paired round {i + 1} {variant.name}: default {cpu[0] * 1000:.3f}, {variant.name} "
                  f"{cpu[1] * 1000:.3f} ms/request, ratio {cpu[1] / cpu[0]:.3f}", file=sys.stderr, flush=True)
            time.sleep(0.5)
    return ratios


def measure(variant: Variant, duration: float) -> dict[str, float]:
    figures: dict[str, float] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollway-variants-")))
        procs = Processes(stack, work)
        args = variant_args(procs, variant)
        gateway = start_gateway(procs, ["--loop", "asyncio", "--delay-ms", "10-30", "--delay-order", "even"], args,
                                variant.workers, variant.cpus, dict(variant.env))
        key = {"Authorization": f"Bearer {gateway.key}"}
        fast = write_script(work / "fast.lua", {"model": "bench", "messages": PROMPT, "max_tokens": 64}, key)
        delayed = write_script(work / "delayed.lua", {"model": "bench-delayed", "messages": PROMPT,
                                                      "max_tokens": 64}, key)
        direct = write_script(work / "direct.lua", {"model": UPSTREAM_MODEL + DELAYED_SUFFIX, "messages": PROMPT},
                              {"Authorization": f"Bearer {UPSTREAM_KEY}"})
        url = gateway.url + "/chat/completions"
        run(url, fast, 64, 2)  # warm up: connections, caches, the first grants
        for suffix, script, connections in (("", fast, 64),
                                            ("@delayed", delayed, CONNECTIONS_PER_WORKER * variant.workers)):
            before = cpu_seconds(gateway.dataplane.pid)
            load = run(url, script, connections, duration)
            figures["req/s" + suffix] = load.rps
            figures["cpu_ms" + suffix] = (cpu_seconds(gateway.dataplane.pid) - before) / max(load.requests, 1) * 1000
        if variant.workers == 1:
            for c in LATENCY_CONNECTIONS:
                seconds = duration * (4 if c == 1 else 1)
                up = run(gateway.upstream_url + "/chat/completions", direct, c, seconds)
                through = run(url, delayed, c, seconds)
                figures[f"p50@{c}"] = through.p50_ms - up.p50_ms
                figures[f"p99@{c}"] = through.p99_ms - up.p99_ms
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--variants", default="default,aiohttp,trace10,trace100,workers2")
    parser.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                        help="then each one-worker variant against the default, both loaded at once on CPU 0")
    args = parser.parse_args(argv)
    chosen = [VARIANTS[name] for name in args.variants.split(",")]
    results: dict[str, list[dict[str, float]]] = {v.name: [] for v in chosen}
    for i in range(args.rounds):
        for variant in chosen:
            figures = measure(variant, args.duration)
            results[variant.name].append(figures)
            print(f"round {i + 1} {variant.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                  file=sys.stderr, flush=True)
    columns = ["req/s", "cpu_ms", "req/s@delayed", "cpu_ms@delayed",
               *(f"{p}@{c}" for c in LATENCY_CONNECTIONS for p in ("p50", "p99"))]
    print("| variant | JSON req/s (64 connections) | CPU ms/request | "
          f"req/s, upstream 10{DASH}30 ms, {CONNECTIONS_PER_WORKER} connections a worker | CPU ms/request, same | "
          + " | ".join(
        f"added {p} at {c}" for c in LATENCY_CONNECTIONS for p in ("p50", "p99")) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, runs in results.items():
        cells = []
        for column in columns:
            values = [r[column] for r in runs if column in r]
            if not values:
                cells.append("—")
                continue
            med, low, high = statistics.median(values), min(values), max(values)
            fmt = "{:,.0f}" if column.startswith("req/s") else "{:.3f}" if column.startswith("cpu_ms") else "{:.2f} ms"
            cells.append(fmt.format(med) + (f" ({fmt.format(low)}{DASH}{fmt.format(high)})" if len(values) > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    pairs = {v.name: paired(v, args.paired, args.duration) for v in chosen
             if args.paired and v.name != "default" and v.workers == 1 and v.cpus is None}
    if pairs:
        print(f"\n| variant | CPU per request over the default's, loaded at once (median, min{DASH}max) | rounds |")
        print("|---|---:|---|")
        for name, ratios in pairs.items():
            print(f"| {name} | {statistics.median(ratios):.2f}\u00d7 ({min(ratios):.2f}{DASH}{max(ratios):.2f}) | "
                  + ", ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
