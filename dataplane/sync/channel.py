"""The data plane's gRPC channels to the control plane: one way to open them (TLS, mTLS, shared options)."""

from __future__ import annotations

from pathlib import Path

import grpc

from dataplane.settings import DataPlaneSettings
from tollway.grpc_options import CLIENT_OPTIONS


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
        return grpc.aio.insecure_channel(s.control_plane, options=CLIENT_OPTIONS)
    return grpc.aio.secure_channel(s.control_plane, credentials, options=CLIENT_OPTIONS)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None

