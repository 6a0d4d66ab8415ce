"""How long a large policy takes to reach every data plane, and what swapping it in costs the requests.

Writes 1,000 tenants and 100,000 keys (plus a provider, model and route) into an embedded store, starts a
control plane in this process and data planes on loopback, and measures:

- initial publish: list + decode + compile on the control plane (a one-off at control-plane start);
- first delivery: a new data plane's connect -> snapshot received, validated, installed;
- change propagation: one key written to the store -> *every* data plane runs the snapshot containing it
  (watch, debounce, recompile, send, decode, build, swap), and -> every one has ACKed it (persisted it too).
  Targets (issue 13): median < 1 s, worst < 2 s, with every worker decoding it;
- the stall: a probe (``bench/harness/stall_probe.py``, its own process) sends one small chat completion every
  5 ms to each data plane; its answers while the data planes take each change in (the control plane has published
  it -> every data plane has ACKed it: receive, decode, build, swap, persist) against those of the second before;
- request CPU against the size of the policy: one data plane with 10 tenants and 100 keys, one with the large
  policy, each alone on CPU 0 under wrk (CPU 1), alternately: CPU time per request (``/proc``) must not grow
  with keys and tenants (the request path is O(1) in both).

    python -m bench.snapshot_propagation [--workers N] [--processes] [--tenants 1000] [--keys 100000]
                                         [--changes 5] [--cpu-runs 3] [--cpu-seconds 5]

``--workers 1`` (the default) runs the data plane inside this process, as ``measure`` always has ("runs" is its
holder's version); ``--workers N`` (N > 1, or 1 with ``--processes``) runs N data-plane processes as ``gatectl
dataplane serve --workers N`` does (``bench/harness/worker_group.py``), worker i pinned to CPU i, this process
(control plane) and the probe on the last CPU; "runs" is each worker's ``/readyz`` on its operator socket, which
answers the version its holder serves requests from (the ACK comes later: after the snapshot is on disk).
In-process, the data plane shares its loop and GIL with the control plane, whose sending is then part of its
stall. Each change is measured separately and the median and worst are reported: on a shared machine single runs
vary. ``--samples PATH`` writes the probe's answers and the windows (JSON). Needs ``wrk`` and two CPUs for the
request-CPU cell (``--cpu-runs 0`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.harness import stall_probe, worker_group
from bench.harness.stack import cpu_seconds, free_port
from bench.harness.wrk import run as run_wrk
from bench.harness.wrk import write_script
from controlplane.policy.resources import dump_resource, parse_resource
from controlplane.server import ControlPlane
from controlplane.settings import ControlPlaneSettings
from controlplane.store.embedded import EmbeddedStore
from controlplane.store.layout import resource_key
from dataplane.serve import DataPlane
from dataplane.settings import DataPlaneSettings
from tollway.keyformat import hash_key, key_of

QUIET_S = 1.0  # before each change: the probe's "before" figures, and time for the previous change to settle
PROBE_BODY = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'


@dataclass(frozen=True)
class Timings:
    initial_publish_s: float
    first_delivery_s: float
    change_propagation_s: list[float]  # per change: store write -> every data plane runs it
    snapshot_bytes: int
    keys_served: int  # keys in the data plane's runtime after the first delivery
    per_worker_s: list[list[float]] = field(default_factory=list)  # per change, each data plane's time
    acked_s: list[float] = field(default_factory=list)  # per change: store write -> every data plane ACKed it
    published_s: list[float] = field(default_factory=list)  # per change: store write -> the control plane has it
    stall: stall_probe.Stall | None = None
    # The probe's raw answers and the windows they were placed against (``--samples`` writes them out).
    samples: list[stall_probe.Sample] = field(default_factory=list, repr=False)
    windows: list[tuple[float, float]] = field(default_factory=list, repr=False)


def _doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def bench_secret(i: int) -> str:
    """The (deterministic, well-formed) secret of bench key ``i``, so the probe and wrk can present one."""
    return key_of(int.from_bytes(hashlib.sha256(f"bench-key-{i}".encode()).digest()))


def _key(i: int, tenants: int) -> dict[str, Any]:
    return _doc("ApiKey", f"key-{i}", tenant=f"tenant-{i % tenants}",
                hash=f"sha256:{hash_key(bench_secret(i)).hex()}", hint="tw_...0000")


def large_policy(tenants: int, keys: int) -> list[dict[str, Any]]:
    docs = [
        _doc("Provider", "mock-eu", type="mock", region="eu"),
        _doc("Model", "small", provider="mock-eu", upstreamModel="small", contextWindow=8192, maxOutputTokens=1024,
             pricing={"inputPerMillion": "0.15", "outputPerMillion": "0.6"}),
        _doc("Route", "chat", models=["small"]),
    ]
    docs += [_doc("Tenant", f"tenant-{t}", regions=["eu"]) for t in range(tenants)]
    docs += [_key(i, tenants) for i in range(keys)]
    return docs


def _encoded(doc: dict[str, Any]) -> tuple[str, bytes]:
    r = parse_resource(doc)
    return resource_key(r.kind, r.name), orjson.dumps(dump_resource(r))


async def _when(check: Callable[[], bool], within: float = 120.0) -> float:
    """When (monotonic seconds) ``check`` first holds, polled every 2 ms."""
    await _until(check, "change", within)
    return time.monotonic()


async def _until(check: Callable[[], bool], what: str, within: float = 120.0) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > within:
            raise TimeoutError(f"{what}: not within {within} s")
        await asyncio.sleep(0.002)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Stack:
    """A control plane (in this process) over an embedded store holding ``large_policy(tenants, keys)``."""

    cp: ControlPlane
    store: EmbeddedStore
    tenants: int
    keys: int
    initial_publish_s: float

    def dataplane_settings(self, node_id: str, state_dir: Path, port: int = 0) -> DataPlaneSettings:
        return DataPlaneSettings(port=port, region="eu", node_id=node_id, control_plane=self.cp.grpc_target,
                                 control_plane_token=self.cp.dataplane_token, state_dir=str(state_dir))

    def has_published_since(self, version: str) -> bool:
        return self.cp.publisher.version("eu") != version

    async def acked(self, node_ids: list[str], version: str) -> bool:
        """Whether every one of ``node_ids`` has ACKed ``version`` (the registry ``gatectl dataplanes`` shows)."""
        async with aiohttp.ClientSession() as http, http.get(
                self.cp.admin_url + "/admin/v1/dataplanes",
                headers={"Authorization": f"Bearer {self.cp.admin_token}"}) as r:
            items = (await r.json())["items"]
        done = {d["nodeId"] for d in items if d["status"] == "ACK" and d["version"] == version}
        return done >= set(node_ids)


@asynccontextmanager
async def control_plane(tenants: int, keys: int, directory: Path) -> AsyncIterator[Stack]:
    store = await EmbeddedStore.open(None)
    try:
        puts = [_encoded(d) for d in large_policy(tenants, keys)]
        for i in range(0, len(puts), 10_000):
            await store.txn([], puts=puts[i:i + 10_000])
        cp = ControlPlane(ControlPlaneSettings(state_dir=str(directory / "cp"), admin_port=0, grpc_port=0),
                          store=store)
        started = time.perf_counter()
        await cp.start()
        try:
            await _until(lambda: cp.publisher.is_ready, "initial publish")
            yield Stack(cp, store, tenants, keys, time.perf_counter() - started)
        finally:
            await cp.stop()
    finally:
        await store.close()


@dataclass
class _Fleet:
    """The data planes under measurement: what each runs, its node id, where the probe reaches it."""

    running: Callable[[], Awaitable[list[str]]]
    node_ids: list[str]
    probe_targets: list[str]
    every_s: float  # how often ``running`` is polled
    keys_served: Callable[[], int]


@asynccontextmanager
async def _fleet(stack: Stack, directory: Path, workers: int, processes: bool, cpus: list[int | None]
                 ) -> AsyncIterator[tuple[_Fleet, float]]:
    """Start the data planes; the fleet and the first delivery (connect -> the last one runs the snapshot)."""
    target = stack.cp.publisher.version("eu")
    if not processes:
        dp = DataPlane(stack.dataplane_settings("bench", directory / "dp"))
        started = time.perf_counter()
        await dp.start()
        try:
            await _until(lambda: dp.holder.version == target, "first delivery")
            first = time.perf_counter() - started
            host, port = dp.url.removeprefix("http://").rsplit(":", 1)

            async def running() -> list[str]:
                return [dp.holder.version]

            yield _Fleet(running, ["bench"], [f"tcp:{host}:{port}"], 0.002,
                         lambda: len(dp.holder.runtime.keys) if dp.holder.runtime is not None else 0), first
        finally:
            await dp.stop()
        return
    group = worker_group.WorkerGroup.start(stack.dataplane_settings("bench", directory / "dp"), workers, cpus,
                                           directory)
    try:
        # From each worker's operator socket answering (the process is up, its discovery stream starting) to it
        # running the snapshot: Python's start-up and imports are not delivery.
        up = await worker_group.until_running(group.answering, want="up", every_s=0.01)
        ready = await worker_group.until_running(group.running, want=target)
        snapshot = stack.cp.publisher.snapshot("eu")
        yield _Fleet(group.running, [s.node_id for s in group.settings],
                     [f"unix:{p}" for p in group.ops_sockets], 0.005,
                     lambda: len(snapshot.keys) if snapshot is not None else 0), \
            max(r - u for r, u in zip(ready, up, strict=True))
    finally:
        await group.close()


async def propagation(stack: Stack, changes: int, directory: Path, *, workers: int = 1, processes: bool = False,
                      probe: bool = False, cpus: list[int | None] | None = None, probe_cpu: int | None = None
                      ) -> Timings:
    """``cpus``: worker i's CPU is ``cpus[i % len(cpus)]`` (None: unpinned); ``probe_cpu``: the probe's."""
    snapshot = stack.cp.publisher.snapshot("eu")
    size = snapshot.ByteSize() if snapshot is not None else 0
    async with _fleet(stack, directory, workers, processes or workers > 1, cpus or [None]) as (fleet, first):
        served = fleet.keys_served()
        prober = await _start_probe(fleet.probe_targets, probe_cpu) if probe else None
        everyone, per_worker, acked, publish, windows = [], [], [], [], []
        try:
            for n in range(changes):
                await asyncio.sleep(QUIET_S)
                before = stack.cp.publisher.version("eu")
                digest = hashlib.sha256(f"bench-change-{n}".encode()).digest()
                doc = _doc("ApiKey", f"change-{n}", tenant="tenant-0", hash=f"sha256:{digest.hex()}",
                           hint="tw_...0000")
                published = asyncio.create_task(_when(functools.partial(stack.has_published_since, before)))
                written = time.monotonic()
                await stack.store.txn([], puts=[_encoded(doc)])
                at = await worker_group.until_running(fleet.running, not_=before, every_s=fleet.every_s)
                version = stack.cp.publisher.version("eu")
                runs = await fleet.running()
                latest = stack.cp.publisher.snapshot("eu")
                if set(runs) != {version} or latest is None or digest not in {k.hash for k in latest.keys}:
                    raise SystemExit(f"change {n}: the data planes run {runs}, the control plane published "
                                     f"{version}, which should hold the new key")
                deadline = time.monotonic() + 120
                while not await stack.acked(fleet.node_ids, version):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"change {n}: not acknowledged by every data plane within 120 s")
                    await asyncio.sleep(0.01)
                done = time.monotonic()
                per_worker.append([t - written for t in at])
                everyone.append(max(at) - written)
                acked.append(done - written)
                publish.append(await published - written)
                windows.append((await published, done))
        finally:
            samples = await _stop_probe(prober) if prober is not None else []
    stall = stall_probe.summarize(samples, windows, len(fleet.probe_targets), QUIET_S) if probe else None
    return Timings(stack.initial_publish_s, first, everyone, size, served, per_worker, acked, publish, stall,
                   samples, windows)


async def measure(tenants: int, keys: int, changes: int, directory: Path) -> Timings:
    """Change propagation to one data plane in this process (what ``tests/discovery`` checks)."""
    async with control_plane(tenants, keys, directory) as stack:
        return await propagation(stack, changes, directory)


async def _start_probe(targets: list[str], cpu: int | None) -> asyncio.subprocess.Process:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    argv = [*pin, sys.executable, "-m", "bench.harness.stall_probe", "--key", bench_secret(0),
            "--body", PROBE_BODY.decode(), *(a for t in targets for a in ("--target", t))]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=worker_group.ROOT, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if line.strip() != b"probing":
        raise SystemExit(f"the stall probe did not start: {line!r}")
    return proc


async def _stop_probe(proc: asyncio.subprocess.Process) -> list[stall_probe.Sample]:
    out, _ = await proc.communicate(b"")
    if proc.returncode != 0:
        raise SystemExit(f"the stall probe failed (exit {proc.returncode})")
    return [tuple(s) for s in orjson.loads(out)["samples"]]


@dataclass(frozen=True)
class CpuCell:
    label: str
    ms_per_request: list[float]
    rps: list[float]


async def request_cpu(stacks: list[tuple[str, Stack]], directory: Path, runs: int, seconds: float
                      ) -> list[CpuCell]:
    """Each stack's data plane alone on CPU 0 under wrk (8 connections, CPU 1), the cells alternating."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _, stack in stacks:
            port = free_port()
            settings = stack.dataplane_settings(f"cpu-{len(procs)}", directory / f"cpu{len(procs)}", port)
            procs.append(worker_group.spawn(settings, 0, directory / f"cpu{len(procs)}.log"))
            urls.append(f"http://127.0.0.1:{port}/v1/chat/completions")
            await worker_group.until_running(functools.partial(_ready, urls[-1]),
                                             want=stack.cp.publisher.version("eu"), every_s=0.05)
        ms: list[list[float]] = [[] for _ in stacks]
        rps: list[list[float]] = [[] for _ in stacks]
        for r in range(-1, runs):  # run -1 warms each data plane up (first lookups, limiter set-up)
            for c in range(len(stacks)) if r % 2 == 0 else reversed(range(len(stacks))):  # ABBA: no order bias
                label, stack = stacks[c]
                key = bench_secret((r * 7919 + 13) % stack.keys)
                script = write_script(directory / "cpu.lua", orjson.loads(PROBE_BODY),
                                      {"Authorization": f"Bearer {key}"})
                before = cpu_seconds(procs[c].pid)
                load = await asyncio.to_thread(run_wrk, urls[c], script, 8, seconds if r >= 0 else 1, "1")
                used = cpu_seconds(procs[c].pid) - before
                if load.errors:
                    raise SystemExit(f"{label}: {load.errors} of {load.requests} requests failed")
                if r >= 0:
                    ms[c].append(used / load.requests * 1000)
                    rps[c].append(load.rps)
        return [CpuCell(label, ms[c], rps[c]) for c, (label, _) in enumerate(stacks)]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            await asyncio.to_thread(worker_group.stop, p)


async def _ready(url: str) -> list[str]:
    try:
        async with aiohttp.ClientSession() as http, http.get(url.replace("/v1/chat/completions", "/readyz")) as r:
            return [str((await r.json()).get("version", ""))] if r.status == 200 else [""]
    except (OSError, aiohttp.ClientError):
        return [""]


def _spread(xs: list[float], digits: int = 2) -> str:
    return f"{statistics.median(xs):.{digits}f} ({min(xs):.{digits}f}-{max(xs):.{digits}f})"


def report(args: argparse.Namespace, t: Timings, cells: list[CpuCell], where: str) -> None:
    print(f"snapshot: {args.tenants} tenants, {args.keys} keys, {t.snapshot_bytes / 1e6:.1f} MB; {where}")
    print(f"initial publish (list + decode + compile): {t.initial_publish_s:.2f} s")
    print(f"first delivery to a new data plane:        {t.first_delivery_s:.2f} s")
    each = ", ".join(f"{s:.2f} s" for s in t.change_propagation_s)
    median, worst = statistics.median(t.change_propagation_s), max(t.change_propagation_s)
    print(f"change propagation (store write -> every data plane runs it): {each}")
    print(f"  of which the control plane (watch, debounce, compile): median {statistics.median(t.published_s):.2f} s")
    print(f"  median {median:.2f} s, worst {worst:.2f} s  "
          f"(target median < 1 s, worst < 2 s: {'ok' if median < 1 and worst < 2 else 'MISSED'})")
    if len(t.per_worker_s[0]) > 1:
        for w in range(len(t.per_worker_s[0])):
            print(f"  worker {w}: {_spread([c[w] for c in t.per_worker_s])} s")
        print(f"  spread (last worker - first), per change: {_spread([max(c) - min(c) for c in t.per_worker_s])} s")
    print(f"  acknowledged by every data plane (persisted too): median {statistics.median(t.acked_s):.2f} s, "
          f"worst {max(t.acked_s):.2f} s")
    if t.stall is not None:
        s = t.stall
        print(f"stall: a request every 5 ms on each data plane; p50 / p99 / max, ms ({s.before.count} answers in "
              f"the {QUIET_S:.0f} s before each change, {s.during.count} during: published -> every ACK)")
        print(f"  before: {s.before.p50_ms:.1f} / {s.before.p99_ms:.1f} / {s.before.max_ms:.1f}")
        print(f"  during: {s.during.p50_ms:.1f} / {s.during.p99_ms:.1f} / {s.during.max_ms:.1f}   worst per change: "
              + ", ".join(f"{ms:.0f}" for ms in s.worst_per_window)
              + "; per data plane: " + ", ".join(f"{ms:.0f}" for ms in s.worst_per_target)
              + (f"; {s.failed} answers not 200" if s.failed else ""))
    if cells:
        print(f"request CPU, one data plane on CPU 0, wrk (8 connections) on CPU 1, {args.cpu_runs} runs of "
              f"{args.cpu_seconds:g} s, median (min-max):")
        for c in cells:
            print(f"  {c.label:28s} {_spread(c.ms_per_request, 3)} ms/request, "
                  f"{statistics.median(c.rps):,.0f} req/s")
        small, large = cells[0].ms_per_request, cells[-1].ms_per_request
        ratio = statistics.median(large) / statistics.median(small)
        # On a shared machine runs vary by ~10 %: a path that grew with the keys would be far apart, not overlapping.
        verdict = "ok" if ratio < 1.1 or min(large) <= max(small) else "MISSED"
        print(f"  large / small: {ratio:.2f}x  (O(1) in keys and tenants, within 10 % or overlapping: {verdict})")


async def run(args: argparse.Namespace, directory: Path) -> tuple[Timings, list[CpuCell], str]:
    """Everything ``main`` reports: the propagation timings, the request-CPU cells, where the processes ran."""
    processes = args.processes or args.workers > 1
    count = len(os.sched_getaffinity(0))
    pinned = processes and count > 1
    cpus: list[int | None] = list(range(count)) if pinned else [None]
    # This process (the control plane) and the probe get a CPU of their own when the workers leave one free;
    # otherwise they go wherever the kernel finds room, rather than always on the same worker's CPU.
    last = count - 1 if pinned and args.workers < count else None
    if last is not None:
        os.sched_setaffinity(0, {last})  # this thread, before any other starts: they inherit it
    if pinned:
        where = (f"{args.workers} data-plane process(es), worker i on CPU i mod {count}; control plane and probe "
                 + (f"on CPU {last}" if last is not None else "unpinned"))
    else:
        where = "the data plane in this process (with the control plane)"
    async with control_plane(args.tenants, args.keys, directory / "large") as large:
        t = await propagation(large, args.changes, directory / "large", workers=args.workers, processes=processes,
                              probe=args.probe, cpus=cpus, probe_cpu=last)
        cells: list[CpuCell] = []
        if args.cpu_runs:
            async with control_plane(10, 100, directory / "small") as small:
                cells = await request_cpu([("10 tenants, 100 keys", small),
                                           (f"{args.tenants:,} tenants, {args.keys:,} keys", large)],
                                          directory, args.cpu_runs, args.cpu_seconds)
    return t, cells, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="data planes (worker processes when > 1)")
    parser.add_argument("--processes", action="store_true", help="one worker process even with --workers 1")
    parser.add_argument("--no-probe", dest="probe", action="store_false", help="skip the stall probe")
    parser.add_argument("--cpu-runs", type=int, default=3, help="runs of the request-CPU cell (0: skip it)")
    parser.add_argument("--cpu-seconds", type=float, default=5.0)
    parser.add_argument("--samples", metavar="PATH", help="write the probe's answers and the change windows (JSON)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        t, cells, where = asyncio.run(run(args, Path(d)))
    report(args, t, cells, where)
    if args.samples:
        Path(args.samples).write_bytes(orjson.dumps({"windows": t.windows, "samples": t.samples}))


if __name__ == "__main__":
    main()
