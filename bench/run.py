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

Needs `wrk` (Debian: `apt-get install wrk`) and `taskset` (util-linux).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_KEY = "sk-bench-upstream-credential"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {url}")


def admin(url: str, token: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        answer: dict[str, Any] = json.loads(r.read())
        return answer


def policy(upstream_port: int) -> list[dict[str, Any]]:
    def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"source": "bench", "document": {"apiVersion": "tollway.dev/v1", "kind": kind,
                                                "metadata": {"name": name}, "spec": spec}}
    return [
        doc("Provider", "upstream", {"type": "openai", "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                                     "region": "bench", "credential": {"env": "BENCH_UPSTREAM_KEY"}}),
        doc("Model", "bench-model", {"provider": "upstream", "upstreamModel": "gpt-4o-mini", "contextWindow": 128000,
                                     "maxOutputTokens": 4096,
                                     "pricing": {"inputPerMillion": "0.15", "outputPerMillion": "0.60"}}),
        doc("Route", "bench", {"models": ["bench-model"]}),
        doc("Model", "bench-embed", {"provider": "upstream", "upstreamModel": "text-embedding-3-small",
                                     "serves": ["embeddings"], "contextWindow": 8191,
                                     "embedding": {"family": "text-embedding-3-small", "dimensions": 8},
                                     "pricing": {"inputPerMillion": "0.02", "outputPerMillion": "0"}}),
        doc("Route", "bench-embed", {"kind": "embeddings", "models": ["bench-embed"]}),
        # Budgets and rate limits on, set high enough never to refuse: the benchmark measures their cost.
        doc("Tenant", "bench", {"regions": ["bench"], "projects": [{"name": "load"}],
                                "budget": {"monthlyUsd": "1000000"},
                                "rateLimits": {"requestsPerMinute": 100_000_000, "tokensPerMinute": 10_000_000_000,
                                               "perModel": [{"route": "bench", "requestsPerMinute": 100_000_000}]}}),
    ]


def wrk_script(path: Path, body: dict[str, Any], key: str | None) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = [[{json.dumps(body)}]]",
             'wrk.headers["Content-Type"] = "application/json"']
    if key:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            result[f"p{pct}_ms"] = float(m.group(1)) * _UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        result["errors"] += sum(float(x) for x in sock.groups())
    return result


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64, help="connections at saturation")
    parser.add_argument("--modes", default="", help="comma-separated subset of: " + ", ".join(m[0] for m in MODES))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    if args.modes:
        wanted = set(args.modes.split(","))
        MODES[:] = [m for m in MODES if m[0] in wanted]
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
    gatectl = [sys.executable, "-m", "cli.main"]
    with tempfile.TemporaryDirectory(prefix="tollway-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        up_port, admin_port, grpc_port, dp_port = free_port(), free_port(), free_port(), free_port()
        admin_token, dp_token = "bench-admin-token", "bench-dataplane-token"
        env = {**os.environ, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY, "PYTHONPATH": str(ROOT)}

        def spawn(cpu: str, argv: list[str], name: str) -> subprocess.Popen[bytes]:
            log = (work / f"{name}.log").open("wb")
            proc = subprocess.Popen(["taskset", "-c", cpu, *argv], cwd=ROOT, env=env, stdout=log, stderr=log)
            stack.callback(proc.wait, 10)
            stack.callback(proc.terminate)
            return proc

        spawn("1", [sys.executable, "-m", "bench.fast_upstream", "--port", str(up_port)], "upstream")
        spawn("1", [*gatectl, "controlplane", "serve", "--store", f"embedded://{work}/store", "--admin-port",
                    str(admin_port), "--grpc-port", str(grpc_port), "--state-dir", str(work / "cp"),
                    "--admin-token", admin_token, "--dataplane-token", dp_token], "controlplane")
        admin_url = f"http://127.0.0.1:{admin_port}"
        wait_http(admin_url + "/healthz")
        admin(admin_url, admin_token, "POST", "/admin/v1/apply", {"documents": policy(up_port), "who": "bench"})
        key = admin(admin_url, admin_token, "POST", "/admin/v1/keys",
                    {"name": "bench-key", "tenant": "bench", "who": "bench"})["secret"]
        dp = spawn("0", [*gatectl, "dataplane", "serve", "--control-plane", f"127.0.0.1:{grpc_port}", "--region",
                         "bench", "--port", str(dp_port), "--state-dir", str(work / "dp"), "--token", dp_token,
                         "--node-id", "bench-dp", "--request-log", str(work / "requests.log")], "dataplane")
        wait_http(f"http://127.0.0.1:{dp_port}/readyz")

        upstream, gateway_url = f"http://127.0.0.1:{up_port}/v1", f"http://127.0.0.1:{dp_port}/v1"
        results: dict[str, Any] = {"duration_s": args.duration, "connections": args.connections}
        for mode, path, direct_body, body in MODES:
            direct, gateway = upstream + DIRECT_PATH[path], gateway_url + path
            direct_script = wrk_script(work / f"{mode}-direct.lua", direct_body, UPSTREAM_KEY)
            gw_script = wrk_script(work / f"{mode}-gateway.lua", body, key)
            run_wrk(gateway, gw_script, 8, 2)  # warm up connections and caches
            one_direct = run_wrk(direct, direct_script, 1, args.duration)
            one_gw = run_wrk(gateway, gw_script, 1, args.duration)
            sat_direct = run_wrk(direct, direct_script, args.connections, args.duration)
            sat_gw = run_wrk(gateway, gw_script, args.connections, args.duration)
            results[mode] = {
                "direct_p50_ms": one_direct["p50_ms"], "direct_p99_ms": one_direct["p99_ms"],
                "gateway_p50_ms": one_gw["p50_ms"], "gateway_p99_ms": one_gw["p99_ms"],
                "added_p50_ms": round(one_gw["p50_ms"] - one_direct["p50_ms"], 3),
                "added_p99_ms": round(one_gw["p99_ms"] - one_direct["p99_ms"], 3),
                "direct_rps": sat_direct["rps"], "gateway_rps": sat_gw["rps"],
                "gateway_p50_ms_at_saturation": sat_gw.get("p50_ms"),
                "gateway_p99_ms_at_saturation": sat_gw.get("p99_ms"),
                "errors": one_gw["errors"] + sat_gw["errors"],
            }
        results["dataplane_peak_rss_mb"] = round(peak_rss_mb(dp.pid), 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'':16} {'direct p50':>11} {'gw p50':>8} {'added p50':>10} {'added p99':>10} {'direct rps':>11} "
          f"{'gw rps':>8} {'errors':>7}")
    for mode, *_ in MODES:
        r = results[mode]
        print(f"{mode:16} {r['direct_p50_ms']:>9.3f}ms {r['gateway_p50_ms']:>6.3f}ms {r['added_p50_ms']:>8.3f}ms "
              f"{r['added_p99_ms']:>8.3f}ms {r['direct_rps']:>11.0f} {r['gateway_rps']:>8.0f} {r['errors']:>7.0f}")
    print(f"data plane peak RSS: {results['dataplane_peak_rss_mb']} MB   (written to {args.output})")


if __name__ == "__main__":
    main()
