"""The gRPC channel options both planes use, defined once: the message limit and the keepalive pairing.

A snapshot travels as one message, so both ends must accept the same size; the data planes ping every 20 s to
notice a dead or silently dropped peer, and the control plane permits those pings between messages.
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
]
