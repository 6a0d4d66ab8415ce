"""Overload: the data plane far past saturation, then back to a light load.

``python -m bench.overload`` starts the bench stack (``bench/harness/stack.py``: data plane alone on CPU 0; upstream,
control plane and wrk on CPU 1), the upstream answering after 10-30 ms, and drives JSON chat completions at a
series of connection counts (default 64, 512 and 1536: below, at and three times the data plane's 512 requests
in flight), then one connection again. For each step it reports throughput, the share shed (503 ``overloaded``,
from the data plane's ``tollway_edge_events_total{event="shed"}``), the p50/p99 of all answers (wrk), the p99 of
admitted requests (the upper bound of the bucket of ``tollway_request_duration_seconds`` holding it), the p99 a
client sees for an admitted and for a refused request (``bench/harness/probe.py``: 8 more connections sending
200 paced requests a second beside wrk's), the overload manager's limit at the end of the step, and the data
plane's peak RSS; and whether a light load after the overload is served within 5 s. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.harness.stack import ROOT, Processes, peak_rss_mb, start_gateway
from bench.harness.wrk import run, write_script

PROMPT = [{"role": "user", "content": "Say something short about load shedding."}]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def shed(metrics: str) -> float:
    found = re.search(r'^tollway_edge_events_total\{event="shed"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def admitted_buckets(metrics: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the admitted requests' latency histogram, summed over routes."""
    totals: dict[float, float] = {}
    for le, n in re.findall(r'^tollway_request_duration_seconds_bucket\{route="[^"]+",le="([^"]+)"\} (\S+)$',
                            metrics, re.M):
        bound = float("inf") if le == "+Inf" else float(le)
        totals[bound] = totals.get(bound, 0.0) + float(n)
    return sorted(totals.items())


def p99_bound(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """The upper bound of the bucket holding the 99th percentile of what was admitted between two scrapes."""
    was = dict(before)
    counts = [(bound, n - was.get(bound, 0.0)) for bound, n in after]
    total = counts[-1][1] if counts else 0.0
    for bound, n in counts:
        if total and n >= 0.99 * total:
            return bound
    return float("nan")


def gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else float("nan")


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * (len(samples) - 1))] if samples else float("nan")


def start_probe(url: str, key: str, body: bytes, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "bench.harness.probe", url, "--key", key,
                             "--body", body.decode(), "--seconds", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="64,192,512,1536", help="connection counts, in order")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    args = parser.parse_args()
    steps = [int(c) for c in args.connections.split(",")]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollway-overload-")))
        procs = Processes(stack, work)
        gateway = start_gateway(procs, ["--loop", "asyncio", "--delay-ms", "10-30"])
        base = gateway.url.removesuffix("/v1")
        body = {"model": "bench-delayed", "messages": PROMPT, "max_tokens": 64}
        script = write_script(work / "chat.lua", body, {"Authorization": f"Bearer {gateway.key}"})
        url = gateway.url + "/chat/completions"
        print("| connections | req/s | shed | p50 all | p99 all | p99 admitted (bucket bound) | probe: admitted "
              "p99 | probe: refused p99 | limit at the end | peak RSS |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for connections in steps:
            before = scrape(base + "/metrics")
            probe = start_probe(url, gateway.key, json.dumps(body).encode(), max(1.0, args.duration - 1))
            load = run(url, script, connections, args.duration, timeout_s=10.0)
            after = scrape(base + "/metrics")
            seen: dict[str, list[float]] = json.loads(probe.communicate()[0] or "{}")
            shed_share = (shed(after) - shed(before)) / max(load.requests, 1)
            bound = p99_bound(admitted_buckets(before), admitted_buckets(after))
            served, refused = seen.get("200", []), seen.get("503", [])
            print(f"| {connections} | {load.rps:,.0f} | {shed_share:.1%} | {load.p50_ms:.1f} ms | "
                  f"{load.p99_ms:.1f} ms | ≤ {bound * 1000:.0f} ms | {p99(served):.1f} ms ({len(served)}) | "
                  f"{p99(refused):.1f} ms ({len(refused)}) | "
                  f"{gauge(after, 'tollway_requests_in_flight_limit'):.0f} | "
                  f"{peak_rss_mb(gateway.dataplane.pid):.0f} MB |", flush=True)
        began = time.monotonic()
        light = run(url, script, 1, 2.0)
        recovered = light.errors == 0 and light.p99_ms < 200
        print(f"\nafter the overload, 1 connection: p50 {light.p50_ms:.1f} ms, p99 {light.p99_ms:.1f} ms, "
              f"{light.errors} errors ({'recovered' if recovered else 'NOT recovered'} within "
              f"{time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
