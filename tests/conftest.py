"""Fixtures shared by the whole suite: real etcd processes and opened stores.

- ``etcd_url`` (session): one etcd process on free loopback ports, started on first use, killed at the end.
- ``etcd_store`` (function): an ``EtcdStore`` on that etcd with the keyspace wiped first. We wipe rather than give
  each test a key prefix so a test sees exactly the keys it wrote, under the real ``/tollway/`` layout; the price
  is that tests on the shared etcd must not run concurrently (pytest runs them one by one) and must not assume
  revisions start at 1 (they keep growing across tests). Compaction on the shared etcd is global but harmless:
  every test only watches from revisions it wrote itself.
- ``store`` (function): an opened ``Store``, parametrized over the embedded backend (in ``tmp_path``) and etcd.
- ``etcd_process`` (function): a private etcd a test may stop and restart.
- ``postgres_server`` (session), ``postgres_url`` (function: a fresh database) and ``any_usage_db`` (both
  engines): a real PostgreSQL (``tests/postgres.py``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.postgres import any_usage_db, postgres_server, postgres_url  # noqa: F401 (fixtures: see there)

ETCD_START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EtcdProcess:
    """One single-member etcd on loopback; ``stop`` and ``start`` keep its data and ports."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("etcd")
        if executable is None:
            pytest.fail("etcd is not installed; install Debian's etcd-server package (apt-get install etcd-server)")
        self.executable = executable
        self.directory = directory
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"etcd://127.0.0.1:{self.client_port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.executable,
            "--name=test",
            f"--data-dir={self.directory / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--initial-cluster-state=new",
        ]
        with (self.directory / "etcd.log").open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ETCD_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"etcd exited with status {self._process.returncode}:\n{self.log_tail()}")
            if self._is_healthy(client):
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"etcd did not become healthy within {ETCD_START_TIMEOUT} s:\n{self.log_tail()}")

    @staticmethod
    def _is_healthy(client: str) -> bool:
        try:
            with urllib.request.urlopen(f"{client}/health", timeout=0.5) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the process (SIGKILL: like a crash, no goodbye to clients) and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def log_tail(self) -> str:
        return (self.directory / "etcd.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    etcd = EtcdProcess(tmp_path_factory.mktemp("etcd"))
    etcd.start()
    try:
        yield etcd.url
    finally:
        etcd.stop()


@pytest.fixture
def etcd_process(tmp_path: Path) -> Iterator[EtcdProcess]:
    etcd = EtcdProcess(tmp_path)
    etcd.start()
    try:
        yield etcd
    finally:
        etcd.stop()


async def _wiped(store: Store) -> Store:
    listing = await store.list("")
    if listing.items:
        await store.txn([], deletes=[kv.key for kv in listing.items])
    return store


@pytest.fixture
async def etcd_store(etcd_url: str) -> AsyncIterator[Store]:
    store = await _wiped(await open_store(etcd_url))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["embedded", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "embedded":
        opened = await open_store(f"embedded://{tmp_path / 'store'}")
    else:
        opened = await _wiped(await open_store(request.getfixturevalue("etcd_url")))
    try:
        yield opened
    finally:
        await opened.close()


# Fixtures that start processes, sockets or files: a test that needs one is not a test of the pure core.
_IMPURE_FIXTURES = frozenset({"tmp_path", "tmp_path_factory", "etcd", "store", "aiohttp_client", "aiohttp_server",
                              "unused_tcp_port", "event_loop"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``-m pure`` is the fast loop: keep it honest. A test marked pure may not be a coroutine nor use a fixture
    that starts something."""
    import inspect

    for item in items:
        if item.get_closest_marker("pure") is None or not isinstance(item, pytest.Function):
            continue
        impure = _IMPURE_FIXTURES.intersection(item.fixturenames)
        if inspect.iscoroutinefunction(item.function) or impure:
            raise pytest.UsageError(f"{item.nodeid} is marked pure but is async or uses {sorted(impure)}: "
                                    "drop the mark or the dependency")
