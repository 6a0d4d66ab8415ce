"""Control-plane settings: one frozen value, read once at start and handed to ``ControlPlane``.

Tokens left unset (None) are read from a file in ``state_dir``; the file is created with a fresh random token
(mode 0600) the first time, so a restarted control plane keeps the tokens its data planes and operators use.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN_FILE = "admin-token"
DATAPLANE_TOKEN_FILE = "dataplane-token"


@dataclass(frozen=True)
class ControlPlaneSettings:
    # None: ``embedded://<state_dir>/store`` (see ``effective_store_url``), so changing ``state_dir`` alone moves
    # the store along with it.
    store_url: str | None = None
    state_dir: str = ".tollway/controlplane"
    # Usage events: None is the embedded DuckDB file ``<state_dir>/usage.duckdb`` (one machine); several replicas
    # share a ``postgresql://USER@HOST/DB`` (controlplane.usage.open).
    usage_store_url: str | None = None
    admin_host: str = "127.0.0.1"
    admin_port: int = 7070
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 7071
    admin_token: str | None = None
    dataplane_token: str | None = None
    # gRPC TLS: server certificate and key; with ``tls_client_ca`` as well, data planes must present a client
    # certificate signed by it (mTLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # GET /metrics on the admin port: public by default (scrapers rarely hold tokens; the metrics carry no secret
    # and no free text); True requires the admin token there too.
    metrics_require_token: bool = False
    # How often usage events older than each tenant's retention are deleted (also once at start).
    retention_interval_seconds: float = 3600.0
    # Budget grants are valid this long: a data plane keeps serving budgeted tenants through a control-plane
    # outage this long (grants are sized to a lease of demand). A dead data plane's grant is reclaimed
    # lease_grace_seconds after it expires, so longer leases strand budget longer.
    lease_ttl_seconds: float = 900.0
    lease_grace_seconds: float = 60.0
    # Alerts (controlplane.alerts): a rate-limit scope refusing this long raises ``ratelimit.refusing``; a failed
    # webhook delivery is retried after webhook_retry_seconds, doubling each time, webhook_max_attempts in all.
    alert_refusing_seconds: float = 60.0
    webhook_retry_seconds: float = 1.0
    webhook_max_attempts: int = 10
    # Staged rollouts (controlplane.rollout): the canary's error rate is judged over this sliding window, once it
    # served rollout_min_requests in it; the automatic promote/abort is evaluated every rollout_tick_seconds.
    rollout_window_seconds: float = 300.0
    rollout_min_requests: int = 20
    rollout_tick_seconds: float = 1.0
    # A data plane's discovery stream is ended, and the data plane shown disconnected, once this many of its
    # heartbeat intervals (which it announces; 5 s by default) pass in a row with no message from it: 3 to 4
    # intervals after its last message, 15-20 s by default. Fewer would end the streams of data planes whose
    # heartbeats are merely late.
    dataplane_missed_heartbeats: int = 3
    # Several replicas on one etcd (controlplane.ha): the name this one goes by (default HOSTNAME-GRPCPORT), its
    # etcd lease (a dead duty holder's duties move within ha_ttl * 4/3 seconds), and how long the data-plane
    # registry keeps entries of data planes no longer seen.
    replica_id: str = ""
    ha_ttl_seconds: float = 5.0
    dataplane_retention_seconds: float = 86_400.0

    @property
    def effective_store_url(self) -> str:
        return self.store_url if self.store_url else f"embedded://{self.state_dir}/store"

    @property
    def effective_usage_store_url(self) -> str:
        return self.usage_store_url if self.usage_store_url else f"duckdb://{self.state_dir}/usage.duckdb"


@dataclass(frozen=True)
class Tokens:
    admin: str
    dataplane: str


def resolve_tokens(settings: ControlPlaneSettings) -> Tokens:
    """The tokens in effect: the configured ones, else those stored in (or newly created in) ``state_dir``."""
    state = Path(settings.state_dir)
    admin = settings.admin_token or load_or_create_token(state / ADMIN_TOKEN_FILE)
    dataplane = settings.dataplane_token or load_or_create_token(state / DATAPLANE_TOKEN_FILE)
    return Tokens(admin=admin, dataplane=dataplane)


def load_or_create_token(path: Path) -> str:
    """Read the token in ``path``; if there is none, create the file (0600) holding 32 random bytes, urlsafe.

    The file appears whole or not at all (written aside, then hard-linked into place, which fails if the name
    exists), so two processes starting at once agree on one token: the loser reads the winner's.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(32)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(fresh + "\n")
    try:
        if path.exists():
            # Present but empty: nothing anyone could have relied on, so it is replaced.
            os.replace(aside, path)
            return fresh
        os.link(aside, path)
    except FileExistsError:
        return load_or_create_token(path)
    finally:
        aside.unlink(missing_ok=True)
    return fresh
