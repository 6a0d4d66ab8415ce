"""The data plane as a process: the HTTP server plus the discovery client that keeps its snapshot current.

``DataPlane`` owns every component and their order, in one ``AsyncExitStack``: ``start`` installs the
persisted snapshot (if any and valid, so it serves while the control plane is away), opens the usage spool and
its shipper, the request log, binds the HTTP server, then starts discovery, leases and health checks; a
component that fails to start stops those already started. ``stop`` unwinds the same stack, last started
first. ``gatectl dataplane serve`` runs it on uvloop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from dataplane.api.app import create_app
from dataplane.api.connection.edge import Edge
from dataplane.api.connection.edge_runner import EdgeRunner
from dataplane.core.content import ContentKey
from dataplane.core.gate import Gate
from dataplane.core.health import Health
from dataplane.core.limits.budget import BudgetBook
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.core.limits.ratelimit import RateLimiter
from dataplane.record.metrics import DataPlaneMetrics
from dataplane.record.records import Records
from dataplane.record.request_log import RequestLog, open_sink
from dataplane.record.spool import UsageSpool
from dataplane.record.trace_context import is_configured
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.disk_cache import SnapshotCache
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.sync.channel import channel_credentials, channel_options
from dataplane.sync.discovery import DiscoveryClient
from dataplane.sync.grants import GrantFile, GrantPersister
from dataplane.sync.health_report import summary_of
from dataplane.sync.leases import LeaseClient
from dataplane.sync.usage_shipper import UsageShipper
from dataplane.upstream.credentials import CredentialCheck
from dataplane.upstream.probe import HealthChecker
from tollway.backoff import Backoff, url_host
from tollway.tasks import cancel

if TYPE_CHECKING:
    from dataplane.record.tracing import Tracer

log = logging.getLogger(__name__)


class DataPlane:
    """One data plane. Not restartable: after ``stop``, build a new one.

    By default its gate enforces the snapshot's rate limits and budgets (``LimitsGate`` over a ``RateLimiter``
    and a ``BudgetBook``), whose fleet shares and grants a ``LeaseClient`` keeps current; ``gate`` replaces
    that gate (tests). Every installed snapshot reaches the runtime, the limits and the budgets together.
    """

    def __init__(
        self, settings: DataPlaneSettings, *, gate: Gate | None = None, backoff: Backoff | None = None,
        budgets: BudgetBook | None = None, limiter: RateLimiter | None = None,
        health_check_interval_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.budgets = budgets or BudgetBook(durable=True)
        self.grant_file = GrantFile(Path(settings.state_dir) / "grants.json")
        self.persister: GrantPersister | None = None
        self.limits = LimitsGate(limiter or RateLimiter(), self.budgets)
        self.gate: Gate = gate or self.limits
        # Deployment health: passive (the request path reports attempts), active (a probe per provider) and the
        # credentials each installed snapshot needs (resolved as it installs); the discovery stream reports it.
        self.health = Health()
        self.holder = SnapshotHolder([self.limits, self.budgets, CredentialCheck(self.health)])
        self.leases = LeaseClient(settings, self.budgets, self.limits.limiter)
        self.health_checker = HealthChecker(self.holder, self.health, interval_s=health_check_interval_s)
        self.discovery = DiscoveryClient(settings, self.holder, SnapshotCache(settings.state_dir),
                                         backoff=backoff or Backoff(), health=summary_of(self.holder, self.health))
        self.metrics = DataPlaneMetrics(self.holder, settings.region, backlog=self._backlog,
                                        snapshot_file=SnapshotCache(settings.state_dir).path)
        self._stack: AsyncExitStack | None = None  # what ``start`` started, for ``stop``
        self._task: asyncio.Task[None] | None = None
        self.spool: UsageSpool | None = None
        self.shipper: UsageShipper | None = None
        self.request_log: RequestLog | None = None
        self.tracer: Tracer | None = None
        self.url = ""  # http://host:port once started (the bound port when settings.port is 0)

    def _backlog(self) -> int:
        return self.shipper.backlog if self.shipper is not None else 0

    @property
    def is_ready(self) -> bool:
        """Ready to serve: a snapshot is installed (from the control plane or from disk)."""
        return self.holder.runtime is not None

    async def start(self) -> None:
        """Start every component in order; if one fails to start, those already started are stopped again."""
        s = self.settings
        async with AsyncExitStack() as stack:
            self.discovery.load_persisted()
            # Grants and their checkouts from before a restart (the control plane may be away): same incarnation,
            # what was checked out counted as spent, the rest of each unexpired grant served.
            incarnation, saved = await asyncio.to_thread(self.grant_file.load)
            self.leases.incarnation = incarnation
            self.budgets.restore(saved, time.time())
            self.persister = GrantPersister(self.budgets, self.grant_file, incarnation)
            await self.persister.persist(force=True)
            self.persister.start()
            stack.push_async_callback(self.persister.stop)
            # Usage records reach the local spool before they are shipped: a crash loses none that completed.
            self.spool = spool = UsageSpool.open(Path(s.state_dir) / "usage", s.node_id)
            stack.callback(self._close_spool)
            self.shipper = UsageShipper(spool, s.control_plane, s.control_plane_token or "",
                                        credentials=channel_credentials(s), options=channel_options(s))
            self.shipper.start()
            stack.push_async_callback(self._stop_shipper)
            if s.request_log:
                self.request_log = RequestLog(
                    open_sink(s.request_log, s.request_log_max_bytes, s.request_log_backups), s.region, s.node_id,
                    ContentKey.from_environ(os.environ))
                self.request_log.start()
                stack.push_async_callback(self._stop_request_log)
            # Traces (off unless an OTLP endpoint is configured): the exporter's thread stops last-in, first-out,
            # after the HTTP server, so the last requests' spans are flushed.
            if is_configured(s, os.environ):  # (the OpenTelemetry SDK is loaded only then: ~2 MB)
                from dataplane.record.tracing import Tracer

                self.tracer = Tracer.configured(s)
            if self.tracer is not None:
                stack.push_async_callback(asyncio.to_thread, self.tracer.shutdown)
            records = Records(self.metrics.requests, spool=spool, log=self.request_log, region=s.region,
                              node_id=s.node_id, tracer=self.tracer)
            edge = Edge.of(s)
            runner = EdgeRunner(create_app(s, self.holder, self.gate, records, self.metrics, self._wait_for_room,
                                           health=self.health, edge=edge), edge=edge, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            # A listen backlog for a burst of several times as many connections as requests may be in flight
            # (aiohttp: 128; past it new connections wait for SYN retries, 1 s then 3 s, before the data plane even
            # sees them, refused or not: at 1,536 connections past a backlog of 1,024 some waited 7 s).
            site = web.TCPSite(runner, s.host, s.port, reuse_address=True, reuse_port=s.reuse_port or None,
                               backlog=max(2048, 4 * s.max_in_flight))
            await site.start()
            if s.ops_socket:  # a worker: the supervisor reads /metrics and /healthz here
                await asyncio.to_thread(Path(s.ops_socket).unlink, missing_ok=True)
                await web.UnixSite(runner, s.ops_socket).start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{url_host(host)}:{port}"
            self._task = asyncio.create_task(self.discovery.run(), name=f"discovery-{s.node_id}")
            stack.push_async_callback(cancel, self._task)
            self.leases.start()
            stack.push_async_callback(self.leases.stop)
            self.health_checker.start()
            stack.push_async_callback(self.health_checker.stop)
            self._stack = stack.pop_all()  # started whole: ``stop`` unwinds it, last started first
        gc.freeze()  # what start-up made lives as long as the process (and see ``SnapshotHolder.adopt``)
        log.info("data plane %s (region %s) serving on %s", s.node_id, s.region, self.url)

    async def _wait_for_room(self, within_s: float) -> None:
        """What a request refused for want of a grant waits for (bounded): the control plane's next answer, then
        the checkout of what it granted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        await self.leases.next_answer(within_s)
        if self.persister is not None:
            await self.persister.next_write(max(0.0, deadline - loop.time()))

    async def stop(self) -> None:
        """Stop what ``start`` started, in reverse order (health checks, leases, discovery, HTTP, log, usage)."""
        stack, self._stack = self._stack, None
        self._task = None
        if stack is not None:
            await stack.aclose()

    async def _stop_request_log(self) -> None:
        if self.request_log is not None:
            await self.request_log.stop()
            self.request_log = None

    async def _stop_shipper(self) -> None:
        if self.shipper is not None:
            await self.shipper.stop(drain_timeout=2.0)
            self.shipper = None

    def _close_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
