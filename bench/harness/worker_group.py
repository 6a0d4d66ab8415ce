"""Data planes as their own processes, each pinned to a CPU, and what each one runs.

``WorkerGroup`` starts what ``gatectl dataplane serve --workers N`` starts: N ``python -m dataplane.main``
processes with ``dataplane.workers.worker_settings(base, i, port)`` (node id ``<id>-w<i>``, state directory
``<dir>/w<i>``, ``SO_REUSEPORT`` on one port held by the group, an operator socket each), but without the
supervisor in between, so that each worker can be pinned to a CPU of its own from its first instruction
(``taskset -c CPU`` execs it: the ``Popen``'s pid is the worker's). ``running()`` asks every worker which
snapshot it runs: ``/readyz`` on its operator socket answers the version its holder serves requests from (set on
the event loop in the same step as the swap), so the kernel's choice of worker never blurs which one answered.

``spawn`` starts one data plane the same way (``gatectl dataplane serve`` with one worker is that process).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from dataplane.main import environment
from dataplane.settings import DataPlaneSettings
from dataplane.workers import reserve_port, worker_settings

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")} | {"PYTHONPATH": path}


def spawn(settings: DataPlaneSettings, cpu: int | None, log: Path) -> subprocess.Popen[bytes]:
    """``python -m dataplane.main`` running ``settings``, pinned to ``cpu`` (None: anywhere); output to ``log``."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    with log.open("ab") as out:
        return subprocess.Popen([*pin, sys.executable, "-m", "dataplane.main"], cwd=ROOT,
                                env=environment(settings, _env()), stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (the data plane drains and stops), SIGKILL if it has not stopped within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class WorkerGroup:
    """N workers on one port. Not task-safe: one caller polls ``running``; ``close`` stops every worker."""

    settings: list[DataPlaneSettings]
    processes: list[subprocess.Popen[bytes]]
    port: int
    _reserved: socket.socket
    _sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @classmethod
    def start(cls, base: DataPlaneSettings, count: int, cpus: list[int | None], logs: Path) -> WorkerGroup:
        reserved = reserve_port(base.host, 0)
        port = int(reserved.getsockname()[1])
        settings = [worker_settings(base, i, port) for i in range(count)]
        processes = [spawn(s, cpus[i % len(cpus)], logs / f"w{i}.log") for i, s in enumerate(settings)]
        return cls(settings, processes, port, reserved)

    @property
    def ops_sockets(self) -> list[str]:
        return [s.ops_socket for s in self.settings]

    async def running(self) -> list[str]:
        """The snapshot version each worker runs ("" : none yet, or its operator socket is not up yet)."""
        return list(await asyncio.gather(*(_version(http) for http in self._http())))

    async def answering(self) -> list[str]:
        """"up" for each worker whose operator socket answers (the process is up: discovery is starting)."""
        return ["up" if ok else "" for ok in await asyncio.gather(*(_healthy(http) for http in self._http()))]

    def _http(self) -> list[aiohttp.ClientSession]:
        """One keep-alive client per worker's operator socket (raises if a worker has exited)."""
        self.check_alive()
        if not self._sessions:
            self._sessions = [aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=s.ops_socket),
                                                    timeout=aiohttp.ClientTimeout(total=30))
                              for s in self.settings]
        return self._sessions

    async def close(self) -> None:
        for http in self._sessions:
            await http.close()
        for p in self.processes:  # every worker drains at once
            p.terminate()
        for p in self.processes:
            await asyncio.to_thread(stop, p)
        self._reserved.close()

    def check_alive(self) -> None:
        dead = [i for i, p in enumerate(self.processes) if p.poll() is not None]
        if dead:
            raise SystemExit(f"data-plane worker(s) {dead} exited (see their logs)")


async def _healthy(http: aiohttp.ClientSession) -> bool:
    try:
        async with http.get("http://worker/healthz") as r:
            return r.status == 200
    except (OSError, aiohttp.ClientError):
        return False


async def _version(http: aiohttp.ClientSession) -> str:
    try:
        async with http.get("http://worker/readyz") as r:
            return str(orjson.loads(await r.read()).get("version", "")) if r.status == 200 else ""
    except (OSError, aiohttp.ClientError):
        return ""


async def until_running(running: Callable[[], Awaitable[list[str]]], *, want: str = "", not_: str = "",
                        every_s: float = 0.005, within_s: float = 120.0) -> list[float]:
    """Poll ``running`` (one version per data plane) until each one runs ``want`` (or, without ``want``, any
    version but ``not_``); when each one was first seen doing so (monotonic seconds)."""
    at: list[float | None] = []
    deadline = time.monotonic() + within_s
    while True:
        versions = await running()
        now = time.monotonic()
        at = at or [None] * len(versions)
        for i, v in enumerate(versions):
            if at[i] is None and v and (v == want if want else v != not_):
                at[i] = now
        if all(t is not None for t in at):
            return [t for t in at if t is not None]
        if now > deadline:
            raise TimeoutError(f"data planes {[i for i, t in enumerate(at) if t is None]} not running "
                               f"{want or 'a new snapshot'} within {within_s:.0f} s")
        await asyncio.sleep(every_s)
