"""The data plane as a process: the HTTP server plus the discovery client that keeps its snapshot current.

``DataPlane`` owns both: ``start`` installs the persisted snapshot (if any and valid, so it serves while the
control plane is away), binds the HTTP server, and starts the discovery client as a background task; ``stop``
cancels and awaits that task and closes the server. ``run`` is the process entry point and uses uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from dataplane.accounting import Gate, OpenGate
from dataplane.app import create_app
from dataplane.budget import BudgetBook
from dataplane.discovery_client import Backoff, DiscoveryClient, channel_credentials
from dataplane.lease_client import LeaseClient, RateLimiterPort
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot_cache import SnapshotCache
from dataplane.state import SnapshotHolder
from dataplane.usage_record import RecordingGate
from dataplane.usage_shipper import UsageShipper
from dataplane.usage_spool import UsageSpool
from tollway.budget_scopes import BudgetIndex
from tollway.pb import snapshot_pb2 as pb

log = logging.getLogger(__name__)


class _BudgetedHolder(SnapshotHolder):
    """A holder that also hands each installed snapshot's budgets to the budget book."""

    def __init__(self, book: BudgetBook) -> None:
        super().__init__()
        self._book = book

    def install(self, snapshot: pb.Snapshot) -> str | None:
        error = super().install(snapshot)
        if error is None:
            self._book.set_index(BudgetIndex.of(snapshot))
        return error


class DataPlane:
    """One data plane. Not restartable: after ``stop``, build a new one.

    ``budgets`` (and ``limiter``): the budget book the gate reserves from and the rate limiter whose shares
    follow the fleet; with either, a ``LeaseClient`` keeps their grants and shares current.
    """

    def __init__(
        self, settings: DataPlaneSettings, *, gate: Gate | None = None, backoff: Backoff | None = None,
        budgets: BudgetBook | None = None, limiter: RateLimiterPort | None = None,
    ) -> None:
        self.settings = settings
        self.holder = _BudgetedHolder(budgets) if budgets is not None else SnapshotHolder()
        self.leases = LeaseClient(settings, budgets or BudgetBook(), limiter) \
            if budgets is not None or limiter is not None else None
        self.discovery = DiscoveryClient(settings, self.holder, SnapshotCache(settings.state_dir),
                                         backoff=backoff or Backoff())
        self._gate = gate
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.spool: UsageSpool | None = None
        self.shipper: UsageShipper | None = None
        self.url = ""  # http://host:port once started (the bound port when settings.port is 0)

    @property
    def is_ready(self) -> bool:
        """Ready to serve: a snapshot is installed (from the control plane or from disk)."""
        return self.holder.runtime is not None

    async def start(self) -> None:
        s = self.settings
        self.discovery.load_persisted()
        # Usage records reach the local spool before they are shipped: a crash loses none that completed.
        self.spool = spool = UsageSpool.open(Path(s.state_dir) / "usage", s.node_id)
        self.shipper = UsageShipper(spool, s.control_plane, s.control_plane_token or "",
                                    credentials=channel_credentials(s))
        self.shipper.start()
        gate = RecordingGate(self._gate or OpenGate(), spool, s.region, s.node_id)
        runner = web.AppRunner(create_app(s, self.holder, gate), access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.settings.host, self.settings.port, reuse_address=True)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.url = f"http://{_url_host(host)}:{port}"
        self._task = asyncio.create_task(self.discovery.run(), name=f"discovery-{self.settings.node_id}")
        if self.leases is not None:
            self.leases.start()
        log.info("data plane %s (region %s) serving on %s", self.settings.node_id, self.settings.region, self.url)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leases is not None:
            await self.leases.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.shipper is not None:
            await self.shipper.stop(drain_timeout=2.0)
            self.shipper = None
        if self.spool is not None:
            self.spool.close()
            self.spool = None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve_forever(settings: DataPlaneSettings) -> None:
    """Run a data plane until SIGINT/SIGTERM (or cancellation), then stop it cleanly."""
    dataplane = DataPlane(settings)
    await dataplane.start()
    try:
        await _until_signalled()
    finally:
        await dataplane.stop()


def run(settings: DataPlaneSettings) -> None:
    """Process entry point (``gatectl dataplane serve``): uvloop, because the request path is I/O bound."""
    uvloop.run(serve_forever(settings))


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or a platform without signals
            pass
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
