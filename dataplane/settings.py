"""Data plane settings: read once at start, immutable afterwards, passed explicitly to ``create_app``."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from tollway.grpc_options import HEARTBEAT_INTERVAL_S

MAX_BODY_BYTES = 4 * 1024 * 1024


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class DataPlaneSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    region: str = "default"
    node_id: str = field(default_factory=default_node_id)
    control_plane: str = "127.0.0.1:7071"
    control_plane_token: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    # The name the control plane's certificate is checked against (every replica's must carry it); None: the
    # host of --control-plane (dataplane.sync.channel).
    tls_server_name: str | None = None
    state_dir: str = ".tollway/dataplane"
    max_body_bytes: int = MAX_BODY_BYTES
    # The structured request log (docs/logging.md): "" off, "-" standard output, else a file path (rotated).
    request_log: str = ""
    request_log_max_bytes: int = 100 * 1024 * 1024
    request_log_backups: int = 5
    # How often the discovery stream carries a heartbeat (liveness and deployment health) between answers; the
    # control plane is told, and ends a stream silent for 3 of these (``dataplane_missed_heartbeats``).
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    # Requests in flight beyond which new ones are shed at once with 503 + Retry-After (overload protection).
    max_in_flight: int = 512
    # Below it, the limit follows the event loop's lag (``api.connection.overload``): a lag averaged over 200 ms above
    # this sheds (0: the fixed limit only).
    overload_lag_s: float = 0.01
    # The connection edge serves whole, non-streamed inference requests itself (``api.connection``'s ``FastPath``)
    # instead of through aiohttp's request machinery.
    fast_path: bool = True
    # Total request header bytes beyond which a request is answered 431 (Envoy's default).
    max_header_bytes: int = 60 * 1024
    # A request's head must be complete this long after its first byte (408); a connection idle this long between
    # requests (or before its first) is closed.
    header_timeout_s: float = 20.0
    keepalive_timeout_s: float = 60.0
    # A body must arrive at this rate, after this grace (408).
    min_body_bytes_per_s: int = 16 * 1024
    body_timeout_s: float = 10.0
    # Connections one client address may hold open (0: no limit); more are answered 429 and closed.
    max_connections_per_client: int = 0
    # A worker of a group on one port (``dataplane.workers``): bind with SO_REUSEPORT, and serve the operator
    # endpoints on this Unix socket too, for the supervisor.
    reuse_port: bool = False
    ops_socket: str = ""
    # Browser origins allowed to call the API (CORS; "*": any); empty: CORS off.
    cors_origins: frozenset[str] = frozenset()
    # OpenTelemetry traces (``dataplane.record.tracing``): the OTLP/HTTP base URL ("" : OTEL_EXPORTER_OTLP_*
    # decides, tracing off when neither is set) and a sampling ratio (None: OTEL_TRACES_SAMPLER decides).
    otlp_endpoint: str = ""
    trace_sampling: float | None = None
