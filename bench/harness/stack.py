"""The processes a gateway benchmark runs, pinned to CPUs, and what /proc says about them.

``start_gateway`` starts the fake upstream and a control plane (embedded store) on CPU 1, applies the bench
policy, creates a key, then starts a data plane (`gatectl dataplane serve --workers 1`: one process, whose pid
is the one measured) alone on CPU 0, as in production: budgets and rate limits enforced (set high enough never
to refuse), usage spooled and shipped, the JSON request log and metrics on. Every process is stopped (SIGTERM,
then waited for) when the caller's ``ExitStack`` closes.

A process is started through ``taskset -c CPU``, which execs it: the ``Popen``'s pid is the process itself, so
``cpu_seconds`` and ``peak_rss_mb`` read the right /proc entry.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fast_upstream import DELAYED_SUFFIX

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-bench-upstream-credential"
UPSTREAM_MODEL = "gpt-4o-mini"
DATAPLANE_TOKEN = "bench-dataplane-token"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


IDLE = ("chrt", "--idle", "0")  # run a command under SCHED_IDLE: only when its CPU has nothing else to do


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, headers: dict[str, str] | None = None,
              process: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Until ``url`` answers 200; a ``process`` that exits first ends the wait at once, quoting the end of its
    ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log is not None else []
            raise SystemExit(f"{url}: the process exited with status {process.returncode}" +
                             "".join(f"\n  {line}" for line in tail))
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
    """Routes ``bench`` (chat), ``bench-delayed`` (chat, the upstream answers after its delay), ``bench-embed``."""
    def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"source": "bench", "document": {"apiVersion": "tollway.dev/v1", "kind": kind,
                                                "metadata": {"name": name}, "spec": spec}}

    def chat_model(name: str, upstream_model: str) -> dict[str, Any]:
        return doc("Model", name, {"provider": "upstream", "upstreamModel": upstream_model, "contextWindow": 128000,
                                   "maxOutputTokens": 4096,
                                   "pricing": {"inputPerMillion": "0.15", "outputPerMillion": "0.60"}})
    return [
        doc("Provider", "upstream", {"type": "openai", "baseUrl": f"http://127.0.0.1:{upstream_port}/v1",
                                     "region": "bench", "credential": {"env": "BENCH_UPSTREAM_KEY"}}),
        chat_model("bench-model", UPSTREAM_MODEL),
        doc("Route", "bench", {"models": ["bench-model"]}),
        chat_model("bench-delayed-model", UPSTREAM_MODEL + DELAYED_SUFFIX),
        doc("Route", "bench-delayed", {"models": ["bench-delayed-model"]}),
        doc("Model", "bench-embed", {"provider": "upstream", "upstreamModel": "text-embedding-3-small",
                                     "serves": ["embeddings"], "contextWindow": 8191,
                                     "embedding": {"family": "text-embedding-3-small", "dimensions": 8},
                                     "pricing": {"inputPerMillion": "0.02", "outputPerMillion": "0"}}),
        doc("Route", "bench-embed", {"kind": "embeddings", "models": ["bench-embed"]}),
        # Budgets and rate limits on, set high enough never to refuse: the benchmark measures their cost.
        doc("Tenant", "bench", {"regions": ["bench"], "projects": [{"name": "load"}],
                                "budget": {"monthlyUsd": "1000000"},
                                "rateLimits": {"requestsPerMinute": 100_000_000, "tokensPerMinute": 10_000_000_000,
                                               "perModel": [{"route": "bench", "requestsPerMinute": 100_000_000},
                                                            {"route": "bench-delayed",
                                                             "requestsPerMinute": 100_000_000}]}}),
    ]


def stat_cpu_seconds(stat: str) -> float:
    """utime + stime of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat text (fields 14 and 15, proc(5))."""
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """The live processes under ``pid`` (a data plane's workers), depth first."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (every thread, live or exited) and of its live descendants (a
    supervisor's workers)."""
    total = 0.0
    for p in (pid, *descendants(pid)):
        try:
            total += stat_cpu_seconds(Path(f"/proc/{p}/stat").read_text())
        except OSError:
            continue  # it ended meanwhile
    return total


def cpu_busy_seconds(cpu: int) -> float:
    """Time CPU ``cpu`` has spent busy (neither idle nor waiting for I/O) since boot, whoever ran, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLOCK_TICKS  # user..steal, less idle and iowait
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def runs_compiled(pid: int) -> bool:
    """Whether the data plane ``pid`` (or a worker of its group) loaded the compiled request path."""
    for p in (pid, *descendants(pid)):
        try:
            if "tollway_hot__mypyc" in Path(f"/proc/{p}/maps").read_text():
                return True
        except OSError:
            continue
    return False


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of ``pid``, or of the largest of its live descendants (per worker)."""
    peak = 0.0
    for p in (pid, *descendants(pid)):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


@dataclass(frozen=True)
class Gateway:
    """A running upstream, control plane and data plane; URLs end in ``/v1``."""

    upstream_url: str
    url: str
    key: str
    upstream: subprocess.Popen[bytes]
    dataplane: subprocess.Popen[bytes]
    control_plane: str = ""  # the control plane's gRPC address, for more data planes (``start_dataplane``)


class Processes:
    """Starts pinned processes whose output goes to ``<work>/<name>.log``; stopped when ``stack`` closes, also
    when the bench is told to stop (SIGTERM, as ``kill`` or a CI timeout sends, unwinds it like Ctrl-C)."""

    def __init__(self, stack: ExitStack, work: Path) -> None:
        self._stack = stack
        self.work = work
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            # (SIGTERM's default, death on the spot, would leave them running)
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY, "PYTHONPATH": path}
        self._logs: dict[int, Path] = {}  # by pid

    def spawn(self, cpu: str, argv: Sequence[str], name: str, env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """``argv`` on ``cpu``, in this stack's environment plus ``env``."""
        path = self.work / f"{name}.log"
        log = self._stack.enter_context(path.open("wb"))
        proc = subprocess.Popen(["taskset", "-c", cpu, *argv], cwd=ROOT, env={**self.env, **(env or {})},
                                stdout=log, stderr=log)
        self._logs[proc.pid] = path
        self._stack.callback(proc.wait, 10)
        self._stack.callback(proc.terminate)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], url: str, timeout: float = 20.0) -> None:
        """``wait_http`` for a process started here: its exit ends the wait at once, quoting its log."""
        wait_http(url, timeout, process=proc, log=self._logs[proc.pid])


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def start_otlp_sink(procs: Processes) -> str:
    """An OTLP/HTTP trace sink (``bench/harness/otlp_sink.py``) on CPU 1 under ``IDLE``, as a collector runs on
    machines of its own in production; returns its URL once it answers."""
    port = free_port()
    sink = procs.spawn("1", [*IDLE, sys.executable, "-m", "bench.harness.otlp_sink", "--port", str(port)],
                       "otlp_sink")
    url = f"http://127.0.0.1:{port}"
    procs.wait_ready(sink, url + "/stats")
    return url


def start_gateway(procs: Processes, upstream_args: Sequence[str] = (), dataplane_args: Sequence[str] = (),
                  workers: int = 1, cpus: str | None = None, env: Mapping[str, str] | None = None) -> Gateway:
    """The upstream, and the control plane under ``IDLE``, on CPU 1, the data plane on CPU 0 (``workers`` of them on
    CPUs 0..N-1, or on ``cpus``, a taskset list; ``env`` added to its environment); returns once the data plane is
    ready."""
    work = procs.work
    gatectl = [sys.executable, "-m", "cli.main"]
    up_port, admin_port, grpc_port = free_port(), free_port(), free_port()
    admin_token, dp_token = "bench-admin-token", DATAPLANE_TOKEN
    upstream = procs.spawn("1", [sys.executable, "-m", "bench.fast_upstream", "--port", str(up_port),
                                 *upstream_args], "upstream")
    # The control plane under SCHED_IDLE (``IDLE``): in production it runs on machines of its own. It shares CPU 1
    # with wrk and the upstream, and at normal priority its ingestion of the usage the data plane ships (15-30 %
    # of CPU 1 under load) delayed them by milliseconds: that, not the data plane, was Tollway's 3.5-4 ms p99 at
    # one connection. At ``nice 19`` it still took its slice when it woke (a one-connection client saw 16-22
    # answers a second more than 1 ms late, 7-9 with the control plane stopped); under SCHED_IDLE any waking task
    # takes the CPU from it at once (6-8). The data plane serves on its snapshot and grants meanwhile.
    control = procs.spawn("1", [*IDLE, *gatectl, "controlplane", "serve", "--store", f"embedded://{work}/store",
                                "--admin-port", str(admin_port), "--grpc-port", str(grpc_port), "--state-dir",
                                str(work / "cp"), "--admin-token", admin_token, "--dataplane-token", dp_token],
                          "controlplane")
    admin_url = f"http://127.0.0.1:{admin_port}"
    procs.wait_ready(control, admin_url + "/healthz")
    admin(admin_url, admin_token, "POST", "/admin/v1/apply", {"documents": policy(up_port), "who": "bench"})
    key = admin(admin_url, admin_token, "POST", "/admin/v1/keys",
                {"name": "bench-key", "tenant": "bench", "who": "bench"})["secret"]
    cpus = cpus or ("0" if workers == 1 else ",".join(map(str, range(workers))))
    dataplane, url = start_dataplane(procs, f"127.0.0.1:{grpc_port}", "dataplane", dataplane_args, workers, cpus,
                                     env)
    return Gateway(upstream_url=f"http://127.0.0.1:{up_port}/v1", url=url, key=key, upstream=upstream,
                   dataplane=dataplane, control_plane=f"127.0.0.1:{grpc_port}")


def start_dataplane(procs: Processes, control_plane: str, name: str, dataplane_args: Sequence[str] = (),
                    workers: int = 1, cpus: str = "0", env: Mapping[str, str] | None = None
                    ) -> tuple[subprocess.Popen[bytes], str]:
    """A data plane of the bench region (node id ``bench-<name>``, its own state dir and request log) on
    ``cpus``, with ``env`` added to its environment; returns once it is ready, with its URL (ending in ``/v1``)."""
    port, work = free_port(), procs.work
    # A group's operator port is free too (its default, the port + 1, may be another connection's).
    group = ["--ops-port", str(free_port())] if workers > 1 else []
    dataplane = procs.spawn(cpus, [sys.executable, "-m", "cli.main", "dataplane", "serve", "--control-plane",
                                   control_plane, "--region", "bench", "--port", str(port), "--state-dir",
                                   str(work / name), "--token", DATAPLANE_TOKEN, "--node-id", f"bench-{name}",
                                   "--workers", str(workers), *group,
                                   "--request-log", str(work / f"{name}-requests.log"), *dataplane_args], name,
                          env)
    # Ready once the control plane (``IDLE``: it runs only when CPU 1 has nothing else to do) has answered it.
    procs.wait_ready(dataplane, f"http://127.0.0.1:{port}/readyz", timeout=60.0)
    return dataplane, f"http://127.0.0.1:{port}/v1"
