"""A data plane in the test's own event loop: the aiohttp application on a loopback port, serving an installed
snapshot, its usage records kept in a list. For end-to-end tests that drive it with the official SDKs and look at
what it recorded; the data plane as a process is ``tests/discovery/conftest.py``'s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from dataplane.api.app import create_app
from dataplane.core.gate import Gate
from dataplane.core.limits.budget import BudgetBook
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.core.limits.ratelimit import RateLimiter
from dataplane.record.metrics import DataPlaneMetrics
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tollway.pb import snapshot_pb2 as pb
from tollway.pb import usage_pb2 as upb


class ListSpool:
    """The usage spool, as a list: every record the data plane appended, in order."""

    def __init__(self) -> None:
        self.records: list[upb.UsageRecord] = []

    def append(self, record: upb.UsageRecord) -> None:
        self.records.append(record)


@dataclass
class InProcess:
    url: str  # the data plane's origin, no path
    app: web.Application
    spool: ListSpool


@asynccontextmanager
async def in_process_data_plane(snap: pb.Snapshot, *, limits: bool = False) -> AsyncIterator[InProcess]:
    """A data plane serving ``snap``; with ``limits``, its rate limits and budgets enforced (a ``LimitsGate``),
    else everything admitted."""
    holder: SnapshotHolder
    gate: Gate | None = None
    if limits:
        budgets = BudgetBook()
        gate = LimitsGate(RateLimiter(), budgets)
        holder = SnapshotHolder([gate, budgets])
    else:
        holder = SnapshotHolder()
    assert holder.install(snap) is None
    spool = ListSpool()
    metrics = DataPlaneMetrics(holder, "eu")
    app = create_app(DataPlaneSettings(port=0), holder, gate, Records(metrics.requests, spool=spool), metrics)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield InProcess(f"http://127.0.0.1:{runner.addresses[0][1]}", app, spool)
    finally:
        await runner.cleanup()
