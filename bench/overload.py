"""Overload: the data plane far past saturation, then back to a light load.

``python -m bench.overload`` starts the bench stack (``bench/harness/stack.py``: data plane alone on CPU 0; upstream,
control plane, wrk and the probe on CPU 1), the upstream answering after 10-30 ms, and drives JSON chat
completions in these steps:

1. saturation: 64 closed-loop connections (each sends its next request when an answer is complete): the rate the
   data plane serves at most, S;
2. 1x and 3x the saturation rate: 512 and 1536 connections, each pausing 512 / S seconds between an answer and
   its next request (clients with think time: the offered rate follows the connections, not the answers'
   latency);
3. a hammer: 1536 closed-loop connections that ignore ``Retry-After`` (every refusal is sent again at once);
4. one connection again, which must be served within 5 s.

For each step: the rate answered, the share shed (503 ``overloaded``, from ``tollway_edge_events_total``), the p99
a client sees for an admitted and for a refused request (``bench/harness/probe.py``: 8 more connections sending
200 paced requests a second beside wrk's), the p99 of every answer wrk got, the overload manager's limit at the
end, and the data plane's RSS after the step and at its peak. Needs ``wrk``.
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

from bench.harness.stack import ROOT, Processes, start_gateway
from bench.harness.wrk import run, write_script

PROMPT = [{"role": "user", "content": "Say something short about load shedding."}]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def shed(metrics: str) -> float:
    found = re.search(r'^tollway_edge_events_total\{event="shed"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else float("nan")


def p99(samples: list[float]) -> float:
    return sorted(samples)[int(0.99 * (len(samples) - 1))] if samples else float("nan")


def start_probe(url: str, key: str, body: bytes, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m", "bench.harness.probe", url, "--key", key,
                             "--body", body.decode(), "--seconds", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid``, MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--dataplane-arg", action="append", default=[],
                        help="an argument for gatectl dataplane serve (repeatable), e.g. "
                        "--dataplane-arg=--overload-lag-ms=5")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tollway-overload-")))
        procs = Processes(stack, work)
        gateway = start_gateway(procs, ["--loop", "asyncio", "--delay-ms", "10-30"], args.dataplane_arg)
        base = gateway.url.removesuffix("/v1")
        body = {"model": "bench-delayed", "messages": PROMPT, "max_tokens": 64}
        headers = {"Authorization": f"Bearer {gateway.key}"}
        url = gateway.url + "/chat/completions"
        closed = write_script(work / "closed.lua", body, headers)
        print("| step | connections | offered | answered req/s | shed | probe: admitted p99 | probe: refused p99 | "
              "wrk: p99 of all | limit at the end | RSS after / peak |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

        def step(name: str, connections: int, script: Path, offered: str) -> float:
            before = scrape(base + "/metrics")
            probe = start_probe(url, gateway.key, json.dumps(body).encode(), max(1.0, args.duration - 1))
            time.sleep(0.5)  # its connections open before wrk's
            load = run(url, script, connections, args.duration, timeout_s=10.0)
            after = scrape(base + "/metrics")
            seen: dict[str, list[float]] = json.loads(probe.communicate()[0] or "{}")
            shed_share = (shed(after) - shed(before)) / max(load.requests, 1)
            served, refused = seen.get("200", []), seen.get("503", [])
            now, peak = rss_mb(gateway.dataplane.pid)
            print(f"| {name} | {connections} | {offered} | {load.rps:,.0f} | {shed_share:.1%} | "
                  f"{p99(served):.1f} ms ({len(served)}) | {p99(refused):.1f} ms ({len(refused)}) | "
                  f"{load.p99_ms:.1f} ms | {gauge(after, 'tollway_requests_in_flight_limit'):.0f} | "
                  f"{now:.0f} / {peak:.0f} MB |", flush=True)
            return load.rps * (1 - shed_share)

        saturation = step("saturation", 64, closed, "closed loop")
        pause_ms = 512 / max(saturation, 1.0) * 1000
        paced = write_script(work / "paced.lua", body, headers, pause_ms=pause_ms)
        step("1x saturation", 512, paced, f"{512 / pause_ms * 1000:,.0f}/s")
        step("3x saturation", 1536, paced, f"{1536 / pause_ms * 1000:,.0f}/s")
        step("hammer (ignores Retry-After)", 1536, closed, "closed loop")
        began = time.monotonic()
        light = run(url, closed, 1, 2.0)
        recovered = light.errors == 0 and light.p99_ms < 200
        print(f"\nafter the overload, 1 connection: p50 {light.p50_ms:.1f} ms, p99 {light.p99_ms:.1f} ms, "
              f"{light.errors} errors ({'recovered' if recovered else 'NOT recovered'} within "
              f"{time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
