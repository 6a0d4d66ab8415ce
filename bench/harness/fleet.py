"""A Tollway fleet as real processes, the way a user runs it: etcd, ``gatectl controlplane serve`` (one, or several
replicas on the one etcd) and several ``gatectl dataplane serve``, each on fixed ports so a process started again
comes back at the same address.

``Fleet`` owns the processes (``close`` stops what is still running); each ``Server`` writes its output to
``<work>/<name>.out|.err``, appended across restarts, and is read while it runs (a chatty server never blocks on a
pipe). Used by ``bench.outage``, its test and ``tests/ha``; nothing here is specific to one scenario.

With ``replicas=N`` (N > 1) the control planes are ``cp1`` .. ``cpN`` (``--replica-id``), each with its own ports
and state directory, all on the fleet's etcd and on ``usage_store`` (a PostgreSQL URL: DuckDB is one replica's
file, so several replicas without it would each report a part of the usage); the tokens are the fleet's, given to
every replica by the environment, and data planes are given every replica (``--control-plane cp1,cp2,...``, in
that order: they stream from the first that answers).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # a loaded 2-core machine can take a while to import and compile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(work: Path) -> dict[str, str]:
    """The caller's environment minus anything that would point gatectl elsewhere; config isolated in ``work``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLWAY_", "OPENAI_"))}
    env["XDG_CONFIG_HOME"] = str(work / "xdg")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Server:
    """One long-running process; ``start`` again after it exited runs the same command line."""

    name: str
    args: list[str]
    work: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _offset: int = 0  # where this run's stderr begins

    @property
    def stderr(self) -> Path:
        return self.work / f"{self.name}.err"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self._offset = self.stderr.stat().st_size if self.stderr.exists() else 0
        with (self.work / f"{self.name}.out").open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=err)
        self.starts += 1

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_log(self, pattern: str, within_s: float = START_TIMEOUT_S) -> re.Match[str]:
        """Until this run's stderr shows ``pattern``."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            with self.stderr.open("rb") as f:
                f.seek(self._offset)
                found = re.search(pattern, f.read().decode(errors="replace"))
            if found:
                return found
            if not self.is_running():
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name}: {pattern!r} not seen (exit {self.exit_code()}):\n{self.log_tail()}")

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within_s: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status (SIGKILL after ``within_s``)."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return await asyncio.to_thread(process.wait, within_s)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
            raise RuntimeError(f"{self.name} did not stop within {within_s} s of {sig.name}") from None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, chars: int = 4000) -> str:
        return self.stderr.read_text(errors="replace")[-chars:] if self.stderr.exists() else ""


def gatectl_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


@dataclass
class Fleet:
    """etcd (started here unless ``etcd_url`` is given), ``replicas`` control planes and ``data_planes`` data
    planes. ``ha_ttl_s``: each replica's ``--ha-ttl`` (0: the default); ``cp_args``: more options for every
    replica (``--alert-refusing-seconds 5``, ...)."""

    work: Path
    data_planes: int
    lease_ttl_s: float
    etcd_url: str = ""
    replicas: int = 1
    usage_store: str = ""
    ha_ttl_s: float = 0.0
    cp_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    etcd: Server | None = None
    control_planes: list[Server] = field(default_factory=list)
    dps: dict[int, Server] = field(default_factory=dict)
    admin_token: str = ""
    dataplane_token: str = ""

    def __post_init__(self) -> None:
        if self.replicas > 1 and not self.usage_store.startswith(("postgresql://", "postgres://")):
            raise ValueError("several control-plane replicas share one usage store: give usage_store a "
                             "postgresql:// URL")
        self.work.mkdir(parents=True, exist_ok=True)
        self.admin_token, self.dataplane_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.env = base_env(self.work) | {"TOLLWAY_ADMIN_TOKEN": self.admin_token,
                                          "TOLLWAY_DATAPLANE_TOKEN": self.dataplane_token}
        self._cp_ports = [(free_port(), free_port()) for _ in range(self.replicas)]
        self.dp_ports = [free_port() for _ in range(self.data_planes)]

    @property
    def replica_ids(self) -> list[str]:
        return [f"cp{i + 1}" for i in range(self.replicas)]

    @property
    def admin_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{admin}" for admin, _ in self._cp_ports]

    @property
    def admin_url(self) -> str:
        """The first replica's admin API (where ``gatectl`` goes unless told otherwise)."""
        return self.admin_urls[0]

    @property
    def grpc_targets(self) -> list[str]:
        return [f"127.0.0.1:{grpc_port}" for _, grpc_port in self._cp_ports]

    @property
    def grpc_target(self) -> str:
        """What data planes are given: every replica, in order."""
        return ",".join(self.grpc_targets)

    @property
    def control_plane(self) -> Server | None:
        """The first replica (the only one, by default)."""
        return self.control_planes[0] if self.control_planes else None

    def dp_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.dp_ports[i]}"

    async def start_etcd(self) -> None:
        executable = shutil.which("etcd")
        if executable is None:
            raise RuntimeError("etcd is not installed (apt-get install etcd-server)")
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self.etcd = Server("etcd", [executable, "--name=bench", f"--data-dir={self.work / 'etcd'}",
                                    f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                                    f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                                    f"--initial-cluster=bench={peer}", "--initial-cluster-state=new"],
                           self.work, self.env)
        self.etcd.start()
        self.etcd_url = "etcd://" + client.removeprefix("http://")
        await self._until_http(self.etcd, f"{client}/health")

    def _control_plane(self, i: int) -> Server:
        while len(self.control_planes) <= i:
            n = len(self.control_planes)
            admin, grpc_port = self._cp_ports[n]
            args = ["controlplane", "serve", "--store", self.etcd_url, "--admin-port", str(admin),
                    "--grpc-port", str(grpc_port), "--lease-ttl", str(self.lease_ttl_s),
                    "--state-dir", str(self.work / ("cp" if self.replicas == 1 else self.replica_ids[n])),
                    *self.cp_args]
            if self.replicas > 1:
                args += ["--replica-id", self.replica_ids[n], "--usage-store", self.usage_store]
            elif self.usage_store:
                args += ["--usage-store", self.usage_store]
            if self.ha_ttl_s:
                args += ["--ha-ttl", str(self.ha_ttl_s)]
            name = "controlplane" if self.replicas == 1 else f"controlplane-{self.replica_ids[n]}"
            self.control_planes.append(Server(name, gatectl_args(*args), self.work, self.env))
        return self.control_planes[i]

    async def start_control_plane(self, i: int | None = None) -> None:
        """Start replica ``i`` (None: every replica, in order, each once the one before serves), or start it
        again (same store, state directory and ports), and wait until it serves."""
        for n in range(self.replicas) if i is None else (i,):
            server = self._control_plane(n)
            server.start()
            await server.wait_log(r"control plane ready: admin API")

    async def kill_control_plane(self, i: int = 0) -> None:
        await self.control_planes[i].stop(signal.SIGKILL)

    def admin_env(self, replica: int = 0) -> dict[str, str]:
        return self.env | {"TOLLWAY_CONTROL_PLANE": self.admin_urls[replica]}

    async def gatectl(self, *args: str, replica: int = 0) -> str:
        """Run one gatectl command against a control plane (replica ``replica``); its stdout (an error if it
        fails)."""
        done = await asyncio.to_thread(subprocess.run, gatectl_args(*args), cwd=ROOT, env=self.admin_env(replica),
                                       capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"gatectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    async def apply(self, documents: list[dict[str, Any]], replica: int = 0) -> None:
        path = self.work / "policy.yaml"
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        await self.gatectl("apply", "-f", str(path), replica=replica)

    async def start_data_plane(self, i: int, region: str) -> None:
        """Start data plane ``i`` (or start it again: same state directory, node id and port) and wait for
        ``/readyz``."""
        if i not in self.dps:
            self.dps[i] = Server(f"dp-{i}", gatectl_args(
                "dataplane", "serve", "--control-plane", self.grpc_target, "--region", region,
                "--port", str(self.dp_ports[i]), "--state-dir", str(self.work / f"dp-{i}"),
                # One process per data plane (not a group of workers): restarting it restarts the data plane.
                "--node-id", f"dp-{i}", "--workers", "1"), self.work, self.env)
        self.dps[i].start()
        await self._until_http(self.dps[i], f"{self.dp_url(i)}/readyz")

    def grant_expiry(self, i: int) -> float:
        """The latest expiry (unix time) among the budget grants data plane ``i`` last saved (``grants.json``,
        rewritten after every lease answer; see ``dataplane.sync.grants``), 0 when there is none yet."""
        try:
            data = json.loads((self.work / f"dp-{i}" / "grants.json").read_bytes())
            return max((float(a["expires_at"]) for a in data["allowances"]), default=0.0)
        except (OSError, ValueError, KeyError, TypeError):  # not written yet, or being replaced
            return 0.0

    async def _until_http(self, server: Server, url: str, within_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + within_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            while time.monotonic() < deadline:
                if not server.is_running():
                    break
                try:
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{server.name}: {url} not ready (exit {server.exit_code()}):\n{server.log_tail()}")

    async def close(self) -> None:
        """Stop every process still running: data planes, control planes, then etcd."""
        for server in [*self.dps.values(), *self.control_planes, self.etcd]:
            if server is not None and server.is_running():
                await server.stop(signal.SIGTERM)
