"""A real three-member etcd cluster on loopback, for the tests where membership is under test: ``kill`` a member
(SIGKILL: a crash, no goodbye), ``start`` it again (it rejoins with its data directory), ``stop`` them all.

Short heartbeats and elections (50 ms, 500 ms) keep a lost leader's replacement quick on loopback.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

START_TIMEOUT_S = 30.0


class Cluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        executable = shutil.which("etcd")
        if executable is None:
            pytest.fail("etcd is not installed; install Debian's etcd-server package (apt-get install etcd-server)")
        self._executable = executable
        self._directory = directory
        self.clients = [free_port() for _ in range(size)]
        self._peers = [free_port() for _ in range(size)]
        self._initial = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, p in enumerate(self._peers))
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * size
        for i in range(size):
            self._spawn(i, "new")
        self._until_healthy(range(size))
        self.url = "etcd://" + ",".join(f"127.0.0.1:{p}" for p in self.clients)

    def _spawn(self, i: int, state: str) -> None:
        client, peer = f"http://127.0.0.1:{self.clients[i]}", f"http://127.0.0.1:{self._peers[i]}"
        with (self._directory / f"etcd-m{i}.log").open("ab") as log:
            self.processes[i] = subprocess.Popen([
                self._executable, f"--name=m{i}", f"--data-dir={self._directory / f'm{i}'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster={self._initial}", f"--initial-cluster-state={state}",
                "--heartbeat-interval=50", "--election-timeout=500"], stdout=log, stderr=subprocess.STDOUT)

    def _until_healthy(self, members: range | list[int]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(self._healthy(self.clients[i]) for i in members):
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"etcd members {list(members)} did not become healthy within {START_TIMEOUT_S} s")
            time.sleep(0.1)

    @staticmethod
    def _healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def kill(self, i: int) -> None:
        process = self.processes[i]
        if process is not None:
            process.kill()
            process.wait(10)
        self.processes[i] = None

    def start(self, i: int) -> None:
        """Start member ``i`` again on its data directory (it rejoins the cluster it was in)."""
        assert self.processes[i] is None, f"m{i} is running"
        self._spawn(i, "existing")
        self._until_healthy([i])

    def stop(self) -> None:
        for i in range(len(self.processes)):
            self.kill(i)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
