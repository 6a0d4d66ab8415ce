"""The data plane's gRPC channels to the control plane: one way to open them (TLS, mTLS, shared options).

How ``--control-plane`` resolves:

- one ``HOST:PORT`` (a DNS name with one address per replica, say): gRPC's own DNS resolver finds every address
  of the name and resolves it again when a connection is lost, so replicas whose addresses change are found.
- several, ``cp1:7071,cp2:7071,cp3:7071``: each name is resolved (every address it has, by the OS resolver) when a
  channel is opened, into one static ``ipv4:``/``ipv6:`` list. The discovery stream opens a channel per
  connection, so it resolves again whenever it reconnects; the lease and usage channels live as long as the
  process, so a list is for replicas whose addresses do not change (otherwise, one name as above).

Either way the channel's ``pick_first`` policy connects to the first address that answers and, when that one
goes away, to the next, without a new channel.

TLS: one channel checks every address's certificate against one name. For a single name that is the name;
a static address list has none, so with several replicas ``--tls-server-name`` names it (``tls_server_name``, the
channel's authority), and every replica's certificate carries it (a subject alternative name they share, next to
their own). ``control_plane_problem`` refuses a list over TLS without it, before anything starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def channel_options(s: DataPlaneSettings) -> list[tuple[str, Any]]:
    """The shared client options, and the name the certificates are checked against when one is configured."""
    if s.tls_server_name and (s.tls_ca or s.tls_cert):
        return [*CLIENT_OPTIONS, ("grpc.default_authority", s.tls_server_name)]
    return CLIENT_OPTIONS


def control_plane_channel(s: DataPlaneSettings) -> grpc.aio.Channel:
    """A channel to the control plane with the shared options, over TLS when configured."""
    credentials = channel_credentials(s)
    if credentials is None:
        return grpc.aio.insecure_channel(grpc_target(s.control_plane), options=channel_options(s))
    return grpc.aio.secure_channel(grpc_target(s.control_plane), credentials, options=channel_options(s))


# A channel that failed this many calls in a row is closed and opened again: a list of control planes is resolved
# when the channel opens, so replicas that all moved (pods rescheduled) are found only by a new one.
REOPEN_AFTER_FAILURES = 5


def control_plane_problem(control_plane: str, *, tls: bool = False, server_name: str | None = None) -> str | None:
    """What is wrong with a ``--control-plane`` value (None: nothing): every entry must be HOST:PORT, and over
    TLS several need the one name their certificates carry (``server_name``)."""
    parts = [p.strip() for p in control_plane.split(",")]
    if len(parts) == 1:
        return None if parts[0] else "is empty"
    for part in parts:
        host, colon, port = part.rpartition(":")
        if not part or not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            return f"has {part!r} where HOST:PORT is expected (several replicas: HOST:PORT,HOST:PORT,...)"
    if tls and not server_name:
        return ("names several replicas over TLS: give --tls-server-name, the host name every replica's "
                "certificate carries (or one DNS name with an address per replica)")
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
