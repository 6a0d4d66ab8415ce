"""The gateway benchmark: added latency and throughput of a data plane over calling the upstream directly.

Starts a fast fake OpenAI upstream, a control plane (embedded store) and a data plane (`gatectl dataplane
serve`, pinned to CPU 0), applies a one-route policy, creates a key, and drives both the upstream directly and
the data plane with wrk (pinned with the upstream and the control plane to CPU 1), JSON and streaming:

Surfaces: chat completions (JSON and streaming), the Responses API translated to chat completions (JSON and
streaming; the direct baseline is the same chat call to the upstream), and embeddings.

- one connection: latency p50/p99 direct and through the gateway; the difference is the added latency;
- saturation (64 connections): requests per second through the gateway;
- the data plane's peak resident memory (VmHWM).

The data plane runs as in production: budgets and rate limits enforced (set high enough never to refuse), usage
records spooled and shipped, the JSON request log and metrics on.

    python -m bench.run [--duration 10] [--connections 64]

Needs `wrk` (Debian: `apt-get install wrk`) and `taskset` (util-linux). The processes are started by
`bench/harness/stack.py`; `python -m bench.overhead` compares the data plane with a bare proxy in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness import wrk
from bench.harness.stack import ROOT, UPSTREAM_KEY, Processes, peak_rss_mb, start_gateway

BODY_JSON = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 64}
_DIRECT_JSON = {**BODY_JSON, "model": "gpt-4o-mini"}
RESPONSES_JSON = {"model": "bench", "input": "Say something short.", "max_output_tokens": 64}
EMBEDDINGS = {"model": "bench-embed", "input": "Say something short."}
# (name, gateway path, the direct call's body, the gateway's body); the direct call of the Responses API is the
# chat completion the gateway translates it to.
MODES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("json", "/chat/completions", _DIRECT_JSON, BODY_JSON),
    ("stream", "/chat/completions", {**_DIRECT_JSON, "stream": True}, {**BODY_JSON, "stream": True}),
    ("responses", "/responses", _DIRECT_JSON, RESPONSES_JSON),
    ("responses-stream", "/responses", {**_DIRECT_JSON, "stream": True}, {**RESPONSES_JSON, "stream": True}),
    ("embeddings", "/embeddings", {**EMBEDDINGS, "model": "text-embedding-3-small"}, EMBEDDINGS),
]
DIRECT_PATH = {"/chat/completions": "/chat/completions", "/responses": "/chat/completions",
               "/embeddings": "/embeddings"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64, help="connections at saturation")
    parser.add_argument("--modes", default="", help="comma-separated subset of: " + ", ".join(m[0] for m in MODES))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    modes = [m for m in MODES if not args.modes or m[0] in set(args.modes.split(","))]
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
    with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        gateway = start_gateway(Processes(stack, work))
        results: dict[str, Any] = {"duration_s": args.duration, "connections": args.connections}
        for mode, path, direct_body, body in modes:
            direct, gateway_url = gateway.upstream_url + DIRECT_PATH[path], gateway.url + path
            direct_script = wrk.write_script(work / f"{mode}-direct.lua", direct_body,
                                             {"Authorization": f"Bearer {UPSTREAM_KEY}"})
            gw_script = wrk.write_script(work / f"{mode}-gateway.lua", body,
                                         {"Authorization": f"Bearer {gateway.key}"})
            wrk.run(gateway_url, gw_script, 8, 2)  # warm up connections and caches
            one_direct = wrk.run(direct, direct_script, 1, args.duration)
            one_gw = wrk.run(gateway_url, gw_script, 1, args.duration)
            sat_direct = wrk.run(direct, direct_script, args.connections, args.duration)
            sat_gw = wrk.run(gateway_url, gw_script, args.connections, args.duration)
            results[mode] = {
                "direct_p50_ms": one_direct.p50_ms, "direct_p99_ms": one_direct.p99_ms,
                "gateway_p50_ms": one_gw.p50_ms, "gateway_p99_ms": one_gw.p99_ms,
                "added_p50_ms": round(one_gw.p50_ms - one_direct.p50_ms, 3),
                "added_p99_ms": round(one_gw.p99_ms - one_direct.p99_ms, 3),
                "direct_rps": round(sat_direct.rps, 1), "gateway_rps": round(sat_gw.rps, 1),
                "gateway_p50_ms_at_saturation": sat_gw.p50_ms,
                "gateway_p99_ms_at_saturation": sat_gw.p99_ms,
                "errors": one_gw.errors + sat_gw.errors,
            }
        results["dataplane_peak_rss_mb"] = round(peak_rss_mb(gateway.dataplane.pid), 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'':16} {'direct p50':>11} {'gw p50':>8} {'added p50':>10} {'added p99':>10} {'direct rps':>11} "
          f"{'gw rps':>8} {'errors':>7}")
    for mode, *_ in modes:
        r = results[mode]
        print(f"{mode:16} {r['direct_p50_ms']:>9.3f}ms {r['gateway_p50_ms']:>6.3f}ms {r['added_p50_ms']:>8.3f}ms "
              f"{r['added_p99_ms']:>8.3f}ms {r['direct_rps']:>11.0f} {r['gateway_rps']:>8.0f} {r['errors']:>7.0f}")
    print(f"data plane peak RSS: {results['dataplane_peak_rss_mb']} MB   (written to {args.output})")


if __name__ == "__main__":
    main()
