"""The data plane's gRPC channels to the control plane: one way to open them (TLS, mTLS, shared options).

``--control-plane`` names one replica (``HOST:PORT``, or a DNS name with one address per replica: gRPC's own
resolver finds them all) or several (``cp1:7071,cp2:7071,cp3:7071``). Several are resolved once, when a channel
is opened, into one static ``ipv4:``/``ipv6:`` target; either way the channel's ``pick_first`` policy connects to
the first replica that answers and, when that one goes away, to the next, without a new channel. With TLS, list
one DNS name instead: a static address list has no host name to check the certificate against.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from dataplane.settings import DataPlaneSettings
from tollway.grpc_options import CLIENT_OPTIONS
from tollway.grpc_targets import static_target


def channel_credentials(s: DataPlaneSettings) -> grpc.ChannelCredentials | None:
    """TLS (and mTLS with a client certificate) to the control plane when configured; None for plain text."""
    if not (s.tls_ca or s.tls_cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(s.tls_ca), private_key=_read(s.tls_key), certificate_chain=_read(s.tls_cert)
    )


def control_plane_channel(s: DataPlaneSettings) -> grpc.aio.Channel:
    """A channel to the control plane with the shared options, over TLS when configured."""
    credentials = channel_credentials(s)
    if credentials is None:
        return grpc.aio.insecure_channel(grpc_target(s.control_plane), options=CLIENT_OPTIONS)
    return grpc.aio.secure_channel(grpc_target(s.control_plane), credentials, options=CLIENT_OPTIONS)


def control_plane_problem(control_plane: str) -> str | None:
    """What is wrong with a ``--control-plane`` value (None: nothing): every entry must be HOST:PORT."""
    parts = [p.strip() for p in control_plane.split(",")]
    if len(parts) == 1:
        return None if parts[0] else "is empty"
    for part in parts:
        host, colon, port = part.rpartition(":")
        if not part or not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            return f"has {part!r} where HOST:PORT is expected (several replicas: HOST:PORT,HOST:PORT,...)"
    return None


def grpc_target(control_plane: str) -> str:
    """The gRPC target of ``--control-plane``: itself for one address, a static address list for several."""
    parts = [p.strip() for p in control_plane.split(",") if p.strip()]
    if len(parts) <= 1:
        return control_plane
    # Nothing resolved: gRPC's own resolver keeps trying the first.
    return static_target([(host, port) for host, _, port in (p.rpartition(":") for p in parts)]) or parts[0]


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None

