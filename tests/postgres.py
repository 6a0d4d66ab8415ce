"""A real PostgreSQL server for the tests: Debian's ``postgresql`` binaries, a throwaway cluster in a temp dir.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster belongs to an unprivileged system user
(``tollway-pg``, created on first use) and ``initdb`` and ``postgres`` run as that user (``runuser``). The server
listens on a free loopback port only (no Unix socket), trusts loopback connections (a test cluster holding no
secret) and skips fsync: durability across a power cut is PostgreSQL's business, not what these tests check.

- ``PostgresProcess``: one cluster; ``start``, ``stop`` and ``create_database``.
- the fixtures (``tests/conftest.py`` imports them): ``postgres_server`` (session: started once, on first use) and
  ``postgres_url`` (function: a fresh, empty database on it, so a test sees exactly the rows it wrote), and
  ``any_usage_db`` (function, parametrized over both engines: a fresh DuckDB file or PostgreSQL database), for
  the tests that must hold on both.

Without PostgreSQL installed a test that needs it is skipped, except in CI (``CI=true``), where it fails: the
README's test command installs it (``scripts/setup.sh dev``).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controlplane.usage.db import UsageDB
from controlplane.usage.postgres import PostgresUsageDB

PG_USER = "tollway-pg"  # the system user the cluster runs as when the tests run as root
START_TIMEOUT = 30.0
_databases = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def postgres_bindir() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/<major>/bin`` (Debian's layout), or wherever ``initdb`` is."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresProcess:
    """One PostgreSQL cluster on 127.0.0.1:``port``; superuser ``tollway`` (trusted on loopback)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.superuser = "tollway"
        self._as_root = os.geteuid() == 0
        # Not under pytest's tmp dirs: those are private to root, and the cluster's user must reach its files.
        self.directory = Path(tempfile.mkdtemp(prefix="tollway-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        # setpriv execs the command itself (runuser would fork and wait), so the process we start is postgres.
        return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", *args] if self._as_root \
            else list(args)

    def _prepare_user(self) -> None:
        if not self._as_root:
            return
        if subprocess.run(["id", "-u", PG_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                           check=True, capture_output=True)
        shutil.chown(self.directory, user=PG_USER, group=PG_USER)

    def start(self) -> None:
        if not self.data.exists():
            self._prepare_user()
            done = subprocess.run(
                self._command(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser,
                              "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"),
                capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                              "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                              "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                              "-c", "max_connections=200"),
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"postgres exited with status {self._process.returncode}:\n{self.log_tail()}")
            if self._is_ready():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"postgres did not accept connections within {START_TIMEOUT} s:\n{self.log_tail()}")

    def _is_ready(self) -> bool:
        done = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True)
        return done.returncode == 0

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"usage_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, nothing is waited for) and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresProcess]:
    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed; install Debian's postgresql package (scripts/setup.sh dev)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresProcess(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresProcess) -> str:
    return postgres_server.create_database()


@pytest.fixture(params=["duckdb", "postgresql"])
async def any_usage_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageDB]:
    """A fresh usage database on each engine: the DuckDB file in ``tmp_path`` and a PostgreSQL database."""
    if request.param == "duckdb":
        db = await UsageDB.open(str(tmp_path / "usage.duckdb"))
    else:
        db = await PostgresUsageDB.connect(request.getfixturevalue("postgres_url"))
    try:
        yield db
    finally:
        await db.close()
