"""Several data planes on one port: a parent process supervising N worker processes (``SO_REUSEPORT``).

CPython runs one core per process; ``gatectl dataplane serve --workers N`` runs N full data planes, each its own
process with its own node id (``<node id>-w<i>``), state directory (``<state dir>/w<i>``: snapshot, usage spool,
grants; a request log file gets the suffix ``.w<i>``), discovery stream, leases and metrics, all bound to the
same port with ``SO_REUSEPORT`` so the kernel spreads connections between them. To the control plane each worker
is a data plane: budgets and rate limits stay exact across workers exactly as across machines.

The parent (``Supervisor``) starts the workers (``python -m dataplane.main`` with each worker's settings: the
data plane's own lean process, no CLI loaded), restarts a worker that dies (after a backoff doubling from 1 s to
30 s), and on SIGTERM or SIGINT stops them all the same way (each drains), killing any still running after
``STOP_TIMEOUT_S``. It also serves the group's operator view on its own port: ``/metrics`` merged from every
worker (counters and histograms summed, gauges labelled ``worker``) and ``/healthz`` (200 when every worker
answers 200), read from each worker over a Unix socket in its state directory (``ops.sock``), so a scrape never
depends on which worker the kernel picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from aiohttp import web

from dataplane.main import environment
from dataplane.settings import DataPlaneSettings
from tollway.prometheus import Registry, merge_expositions

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
RESTART_BACKOFF_S = (1.0, 30.0)
OPS_SOCKET = "ops.sock"


def worker_settings(base: DataPlaneSettings, index: int, port: int) -> DataPlaneSettings:
    """What worker ``index`` of a group based on ``base`` runs with."""
    state = Path(base.state_dir) / f"w{index}"
    ops = state / OPS_SOCKET
    if len(str(ops.absolute())) > 100:  # a Unix socket path ends at 108 bytes: a short one in the temp dir
        digest = hashlib.sha256(str(ops.absolute()).encode()).hexdigest()[:16]
        ops = Path(tempfile.gettempdir()) / f"tollway-ops-{digest}.sock"
    log_file = base.request_log if base.request_log in ("", "-", "stdout") else f"{base.request_log}.w{index}"
    return replace(base, node_id=f"{base.node_id}-w{index}", state_dir=str(state), port=port, reuse_port=True,
                   ops_socket=str(ops), request_log=log_file)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) with ``SO_REUSEPORT`` to ``host:port`` (0: a free port), held for the
    group's lifetime so the port stays the group's while workers come and go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _bind_error(exc: OSError, what: str, host: str, port: int) -> OSError:
    """``exc`` of binding ``host:port`` as an error that says which of the group's ports it is."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return OSError(exc.errno, f"the group's {what} {host}:{port}: {reason}")


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


class Supervisor:
    """Owns the workers and the group's operator endpoint. ``start``, then ``run`` until ``stop``."""

    def __init__(self, base: DataPlaneSettings, workers: int, *, ops_host: str, ops_port: int) -> None:
        self.base = base
        self.count = workers
        self.ops_host, self.ops_port = ops_host, ops_port
        self.port = 0
        self.ops_url = ""
        self._reserved: socket.socket | None = None
        self._workers = [_Worker(i) for i in range(workers)]
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._ops: web.AppRunner | None = None

    async def start(self) -> None:
        """Reserve the port, open the group's operator endpoint, start the workers. A port that cannot be bound
        raises ``OSError`` naming it."""
        try:
            self._reserved = reserve_port(self.base.host, self.base.port)
        except OSError as exc:
            raise _bind_error(exc, "port", self.base.host, self.base.port) from None
        self.port = int(self._reserved.getsockname()[1])
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._ops = web.AppRunner(app, access_log=None)
        await self._ops.setup()
        try:
            await web.TCPSite(self._ops, self.ops_host, self.ops_port).start()
        except OSError as exc:
            await self._ops.cleanup()
            self._reserved.close()
            raise _bind_error(exc, "operator port (/metrics, /healthz)", self.ops_host, self.ops_port) from None
        host, port = self._ops.addresses[0][:2]
        self.ops_url = f"http://{host}:{port}"
        for w in self._workers:
            await self._spawn(w)
            self._watchers.append(asyncio.create_task(self._watch(w), name=f"worker-{w.index}"))

    async def _spawn(self, w: _Worker) -> None:
        env = environment(worker_settings(self.base, w.index, self.port), os.environ, os.getpid())
        w.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "dataplane.main", env=env)
        log.info("worker %d started (pid %d)", w.index, w.process.pid)

    async def _watch(self, w: _Worker) -> None:
        delay = RESTART_BACKOFF_S[0]
        while True:
            assert w.process is not None
            code = await w.process.wait()
            if self._stopping:
                return
            log.error("worker %d (pid %d) exited with status %s; restarting it in %.0f s", w.index,
                      w.process.pid, code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            delay = min(delay * 2, RESTART_BACKOFF_S[1])
            w.restarts += 1
            await self._spawn(w)

    async def stop(self) -> None:
        """SIGTERM to every worker (each drains and stops), SIGKILL to any still running after the timeout."""
        self._stopping = True
        for t in self._watchers:
            t.cancel()
        running = [w.process for w in self._workers if w.process is not None and w.process.returncode is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for p in running:
                if p.returncode is None:
                    log.error("worker pid %d did not stop within %.0f s; killing it", p.pid, STOP_TIMEOUT_S)
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            await asyncio.gather(*(p.wait() for p in running))
        if self._ops is not None:
            await self._ops.cleanup()
        if self._reserved is not None:
            self._reserved.close()

    # --- the group's operator view ------------------------------------------------------------------------------

    async def _ask(self, index: int, path: str) -> tuple[int, str]:
        sock = worker_settings(self.base, index, self.port).ops_socket
        try:
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock),
                                             timeout=aiohttp.ClientTimeout(total=5)) as http, \
                    http.get(f"http://worker{path}") as r:
                return r.status, await r.text()
        except (OSError, aiohttp.ClientError, TimeoutError):
            return 0, ""

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(self._ask(w.index, "/metrics") for w in self._workers))
        parts = [(str(i), text) for i, (status, text) in enumerate(answers) if status == 200]
        restarts = "\n".join(f'tollway_worker_restarts_total{{worker="{w.index}"}} {w.restarts}'
                             for w in self._workers)
        body = merge_expositions(parts) + (
            "# HELP tollway_workers_up Workers of this data-plane group answering their operator socket\n"
            "# TYPE tollway_workers_up gauge\n"
            f"tollway_workers_up {len(parts)}\n"
            "# HELP tollway_worker_restarts_total Times the supervisor restarted a worker that died\n"
            "# TYPE tollway_worker_restarts_total counter\n" + restarts + "\n")
        return web.Response(body=body.encode(), headers={"Content-Type": Registry.CONTENT_TYPE})

    async def _healthz(self, request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(self._ask(w.index, "/healthz") for w in self._workers))
        workers = [{"worker": i, "status": status} for i, (status, _) in enumerate(answers)]
        healthy = all(status == 200 for status, _ in answers)
        return web.json_response({"status": "ok" if healthy else "degraded", "workers": workers},
                                 status=200 if healthy else 503)
