"""The control plane as a process: store, publisher, discovery gRPC server and admin HTTP API, wired once.

``ControlPlane.start`` resolves the tokens, opens the store, starts the publisher (a background task it owns),
then binds the gRPC and HTTP servers; ``stop`` undoes all of it in reverse order, awaiting every task, so
nothing is left pending. Ports may be 0: ``admin_url`` and ``grpc_target`` then name the bound ones.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from aiohttp import web

from controlplane.admin.alerts_api import add_alert_routes
from controlplane.admin.api import create_admin_app
from controlplane.admin.dashboard.data import add_dashboard_sources
from controlplane.admin.metrics import ControlPlaneMetrics, add_metrics_routes
from controlplane.alerts.duty import AlertDuty
from controlplane.ha.election import Election, open_election, run_while_held
from controlplane.ha.shared import ReplicaSync
from controlplane.ha.status import HaStatus, add_ha_routes
from controlplane.money.lease_service import LeaseServicer
from controlplane.money.ledger import Ledger
from controlplane.money.levels import BudgetLevel, budget_levels
from controlplane.policy.compile import PolicySet
from controlplane.policy.repository import Repository
from controlplane.push.discovery import DiscoveryServicer, Registry
from controlplane.push.publisher import Publisher
from controlplane.rollout.api import add_rollout_routes
from controlplane.rollout.manager import RolloutManager, rollout_pin
from controlplane.settings import ControlPlaneSettings, Tokens, resolve_tokens
from controlplane.store.base import Store
from controlplane.store.open import open_store
from controlplane.usage.db import UsageDB
from controlplane.usage.open import open_usage_db
from controlplane.usage.retention import RetentionTask
from controlplane.usage.service import UsageServicer
from tollway.backoff import url_host
from tollway.grpc_options import SERVER_OPTIONS
from tollway.tasks import cancel

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class ControlPlane:
    """One control plane. Not restartable: after ``stop``, build a new one.

    After ``start``: ``admin_token`` and ``dataplane_token`` are the tokens in effect (configured or read from
    ``state_dir``), ``admin_url`` is ``http://host:port`` and ``grpc_target`` ``host:port``.
    """

    def __init__(self, settings: ControlPlaneSettings, *, store: Store | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``store``: an opened store to use instead of opening ``settings.effective_store_url``; the caller
        keeps owning it (``stop`` leaves it open). Tests use this to run on a store they configure.
        ``clock`` (unix seconds) is what usage retention measures ages against; tests move it."""
        self.settings = settings
        self._given_store = store
        self.admin_url = ""
        self.grpc_target = ""
        self._tokens: Tokens | None = None
        self._store: Store | None = None
        self._publisher: Publisher | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._usage_db: UsageDB | None = None
        self._clock = clock
        self.metrics = ControlPlaneMetrics()
        self.retention: RetentionTask | None = None  # usage retention (after ``start``)
        self.ledger: Ledger | None = None  # budget spend and grants (after ``start``)
        self.alerts: AlertDuty | None = None  # alert events and webhook deliveries (after ``start``)
        self.election: Election | None = None  # who holds the singleton duties (after ``start``)
        self.replicas: ReplicaSync | None = None  # what the replicas share (after ``start``)
        self._duty_tasks: list[asyncio.Task[None]] = []
        self.rollouts: RolloutManager | None = None  # staged rollouts (after ``start``)

    @property
    def usage_db(self) -> UsageDB:
        return self._started(self._usage_db)

    @property
    def admin_token(self) -> str:
        return self._started(self._tokens).admin

    @property
    def dataplane_token(self) -> str:
        return self._started(self._tokens).dataplane

    @property
    def store(self) -> Store:
        return self._started(self._store)

    @property
    def publisher(self) -> Publisher:
        return self._started(self._publisher)

    @staticmethod
    def _started(value: _T | None) -> _T:
        if value is None:
            raise RuntimeError("the control plane is not started")
        return value

    async def start(self) -> None:
        s = self.settings
        self._tokens = tokens = resolve_tokens(s)
        try:
            self._store = store = self._given_store or await open_store(s.effective_store_url)
            repository = Repository(store, on_commit=self.metrics.committed)
            # The publisher follows a staged rollout's record with the policy (a rollout in progress resumes
            # from the store before the first publish).
            self._publisher = publisher = Publisher(store, rollout_pin=rollout_pin(repository))
            registry = Registry(publisher)
            self._usage_db = usage_db = await open_usage_db(s.effective_usage_store_url)
            replica = s.replica_id or f"{socket.gethostname()}-{s.grpc_port}"
            self.rollouts = rollouts = RolloutManager(
                repository, publisher, registry, usage_db, replica=replica, window_s=s.rollout_window_seconds,
                min_requests=s.rollout_min_requests)
            self._publisher_task = asyncio.create_task(publisher.run(), name="publisher")
            sync: list[ReplicaSync] = []
            self.election = election = open_election(store, replica, s.ha_ttl_seconds,
                                                     on_tick=lambda: sync[0].sync() if sync else None)
            self.alerts = alerts = AlertDuty(store, lambda: _policy(repository),
                                             refusal_threshold_s=s.alert_refusing_seconds,
                                             retry_base_s=s.webhook_retry_seconds,
                                             max_attempts=s.webhook_max_attempts, duty=election)
            alerts.start()
            self.ledger = ledger = Ledger(store, ttl_s=s.lease_ttl_seconds, grace_s=s.lease_grace_seconds,
                                          observe=alerts.budget_observed)
            leases = LeaseServicer(ledger, publisher, tokens.dataplane, alerts=alerts)
            discovery = DiscoveryServicer(publisher, registry, tokens.dataplane,
                                          missed_heartbeats=s.dataplane_missed_heartbeats)
            await self._start_grpc(discovery,
                                   UsageServicer(usage_db, tokens.dataplane, settle=leases.settle_usage), leases)
            self.retention = retention = RetentionTask(usage_db, lambda: _policy(repository),
                                                       interval=s.retention_interval_seconds, clock=self._clock)
            self.replicas = replicas = ReplicaSync(store, election, registry, leases.rates,
                                                   addresses=lambda: (self.admin_url, self.grpc_target),
                                                   retention_s=s.dataplane_retention_seconds)
            sync.append(replicas)
            # Singleton duties run on the replica that holds them (always, on the embedded store's one replica).
            self._duty_tasks = [
                asyncio.create_task(election.run(), name="election"),
                asyncio.create_task(run_while_held(election, s.retention_interval_seconds,
                                                   lambda: retention.run_once(election.token()),
                                                   "usage retention"), name="usage-retention"),
                asyncio.create_task(run_while_held(election, s.rollout_tick_seconds, rollouts.tick,
                                                   "rollout decision"), name="rollout-decision"),
            ]
            self.metrics.attach(registry, usage_db, self.retention,
                                budgets=lambda: _budget_levels(ledger, repository, self._clock()),
                                alerts=alerts.stats)
            admin = create_admin_app(repository, registry, tokens.admin, usage_db)
            add_alert_routes(admin, alerts)
            add_rollout_routes(admin, rollouts)
            add_dashboard_sources(admin, registry, publisher, store)
            add_metrics_routes(admin, self.metrics, require_token=s.metrics_require_token)
            add_ha_routes(admin, HaStatus(store, election, replicas))
            await self._start_admin(admin)
        except BaseException:
            await self.stop()
            raise
        log.info("control plane: admin API %s, discovery %s", self.admin_url, self.grpc_target)

    async def _start_grpc(self, discovery: DiscoveryServicer, usage: UsageServicer, leases: LeaseServicer) -> None:
        s = self.settings
        server = grpc.aio.server(options=SERVER_OPTIONS)
        discovery.add_to(server)
        usage.add_to(server)
        leases.add_to(server)
        address = f"{s.grpc_host}:{s.grpc_port}"
        credentials = _server_credentials(s)
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
        if port == 0:
            raise OSError(f"cannot bind the discovery port {address}")
        self._grpc = server
        await server.start()
        self.grpc_target = f"{url_host(s.grpc_host)}:{port}"

    async def _start_admin(self, app: web.Application) -> None:
        s = self.settings
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        await web.TCPSite(runner, s.admin_host, s.admin_port, reuse_address=True).start()
        host, port = runner.addresses[0][:2]
        self.admin_url = f"http://{url_host(host)}:{port}"

    async def stop(self) -> None:
        """Stop serving, in reverse order of ``start``. Safe to call twice or after a failed start."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._grpc is not None:
            await self._grpc.stop(grace=0.5)  # open discovery streams are cancelled; data planes reconnect
            self._grpc = None
        for task in self._duty_tasks:
            await cancel(task)
        self._duty_tasks = []
        if self.election is not None:
            await self.election.resign()  # the next replica takes the duties now, not at the lease's expiry
            self.election = None
        if self.retention is not None:
            await self.retention.stop()
            self.retention = None
        if self.alerts is not None:
            await self.alerts.stop()
            self.alerts = None
        if self._usage_db is not None:
            await self._usage_db.close()
            self._usage_db = None
        await cancel(self._publisher_task)
        self._publisher_task = None
        if self._store is not None:
            if self._store is not self._given_store:
                await self._store.close()
            self._store = None


async def _policy(repository: Repository) -> PolicySet:
    return (await repository.state()).policy


async def _budget_levels(ledger: Ledger, repository: Repository, now: float) -> list[BudgetLevel]:
    return await budget_levels(ledger, await _policy(repository), now)


def _server_credentials(s: ControlPlaneSettings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mTLS (client certificates required) when a client CA is too."""
    if not (s.tls_cert and s.tls_key):
        return None
    return grpc.ssl_server_credentials(
        [(Path(s.tls_key).read_bytes(), Path(s.tls_cert).read_bytes())],
        root_certificates=Path(s.tls_client_ca).read_bytes() if s.tls_client_ca else None,
        require_client_auth=s.tls_client_ca is not None,
    )
