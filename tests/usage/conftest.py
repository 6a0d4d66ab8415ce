"""Usage-pipeline fixtures: a real control-plane usage server (grpc.aio on loopback, DuckDB in ``tmp_path``)
and record factories.

- ``usage_db``: a ``UsageDB`` on a DuckDB file in ``tmp_path``, closed at the end.
- ``ControlPlaneUsage``: the Usage service on a grpc.aio server, startable on a port chosen beforehand so a test
  can start it only after a data plane began spooling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controlplane.usage.db import UsageDB
from controlplane.usage.service import UsageServicer
from tests.conftest import free_port
from tests.discovery.conftest import data_plane_factory  # noqa: F401 (a fixture the end-to-end test uses)
from tollway.pb import usage_pb2 as upb

TOKEN = "dataplane-token-for-tests"


def record(i: int, *, tenant: str = "acme", project: str = "web", cost: int = 1_000, tags: tuple[str, ...] = (),
           prefix: str = "req") -> upb.UsageRecord:
    return upb.UsageRecord(
        request_id=f"{prefix}-{i}", timestamp_ms=1_700_000_000_000 + i, tenant=tenant, project=project,
        user=f"user-{i % 3}", key_id="web-key", route="gpt-4o", deployment="openai-gpt-4o", provider="openai",
        region="eu", snapshot_version="v1", input_tokens=100 + i, cached_input_tokens=10, output_tokens=20,
        cost_micros=cost, latency_ms=120, ttfb_ms=40, upstream_ms=110, status=200, attempts=1, tags=list(tags),
        stream=i % 2 == 0, node_id="dp-1",
    )


class ControlPlaneUsage:
    """The control plane's usage service alone, on 127.0.0.1:``port``."""

    def __init__(self, db: UsageDB, port: int | None = None, token: str = TOKEN) -> None:
        self.db = db
        self.port = port if port is not None else free_port()
        self.token = token
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        UsageServicer(self.db, self.token).add_to(server)
        server.add_insecure_port(self.target)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None


@pytest.fixture
async def usage_db(tmp_path: Path) -> AsyncIterator[UsageDB]:
    db = await UsageDB.open(str(tmp_path / "usage.duckdb"))
    yield db
    await db.close()


@pytest.fixture
async def control_plane(usage_db: UsageDB) -> AsyncIterator[ControlPlaneUsage]:
    cp = ControlPlaneUsage(usage_db)
    await cp.start()
    yield cp
    await cp.stop()
