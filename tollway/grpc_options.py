"""The gRPC channel options both planes use, defined once: the message limit and the keepalive pairing.

A snapshot travels as one message, so both ends must accept the same size; the data planes ping every 20 s to
notice a dead or silently dropped peer, and the control plane permits those pings between messages. A data plane's
channels retry a lost control plane at least every 5 s (gRPC's reconnect backoff grows to 2 minutes by default,
and a call made while it waits fails at once): after a long outage the grants are renewed within seconds of the
control plane's return, not minutes, before they expire.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a snapshot with 100,000 keys must fit, with room to grow

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]

CLIENT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_reconnect_backoff_ms", 5_000),  # the lease and discovery loops' own cap
]
