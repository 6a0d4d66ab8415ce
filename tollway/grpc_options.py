"""The gRPC channel options both planes use, defined once: the message limit and the keepalive pairing.

A snapshot travels as one message, so both ends must accept the same size. A data plane's channels retry a lost
control plane at least every 5 s (gRPC's reconnect backoff grows to 2 minutes by default, and a call made while
it waits fails at once): after a long outage the grants are renewed within seconds of the control plane's return,
not minutes, before they expire.

Keepalive, both ways, so that neither end keeps a dead peer (host lost, partition, process frozen: no FIN or RST
ever arrives, and TCP alone gives up only after many minutes):

- The data planes ping every 20 s. The control plane accepts pings as often as every 10 s, with or without calls;
  a client pinging more often than its server permits is sent GOAWAY ``too_many_pings``, and 20 s is twice that
  floor. (A client sends at most two pings with no data of its own between them: the discovery stream's
  heartbeats are that data.)
- The control plane pings every 20 s too and closes a connection whose ping goes unanswered for 10 s, which ends
  every call on it (discovery, usage, leases) within 30 s of the peer's last sign of life. Nothing limits these
  pings: only a server polices the pings it receives (clients answer any), and the two-pings rule is a client's,
  so they go on when only the data plane sends. This is the backstop for what the discovery stream's own check
  (``controlplane.push.discovery``: three heartbeat intervals of silence, 15 s by default) cannot end by itself:
  a snapshot being sent into a frozen peer's full window, and the usage stream.
- How long a ping's answer is awaited is ``grpc.http2.ping_timeout_ms`` in fact: gRPC 1.85 does not apply
  ``keepalive_timeout_ms`` (its timer is never armed) and waits the ping timeout, a minute by default. The control
  plane sets it to 10 s: its peers answer at once (what they send it is small). The data planes keep the minute:
  a control plane sending a large snapshot over a slow link answers behind it, and a shorter wait would cut the
  transfer.

``HEARTBEAT_INTERVAL_S``: the discovery stream's heartbeat, a data plane's default (``DataPlaneSettings``), and
what the control plane counts silence in for a data plane that does not announce its own.
"""

from __future__ import annotations

from typing import Any

HEARTBEAT_INTERVAL_S = 5.0

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a snapshot with 100,000 keys must fit, with room to grow

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # at most half the clients' keepalive_time_ms
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
]

CLIENT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_reconnect_backoff_ms", 5_000),  # the lease and discovery loops' own cap
]
