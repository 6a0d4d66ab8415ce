"""The data plane application's typed state (``web.AppKey``s) and the headers every answer carries.

``create_app`` (``dataplane.api.app``) sets every key once; handlers only read them. The objects behind them are
owned by the event loop (``Gate``, ``Records``, ``Health``) or immutable (``DataPlaneSettings``).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import web

from dataplane.api.connection.edge import Edge
from dataplane.core.gate import Gate
from dataplane.core.health import Health, RetryBudget
from dataplane.errors import ApiError
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.upstream.adapters import Adapter

# Waits for the control plane's next lease answer (bounded); None without a lease client.
LeaseWait = Callable[[float], Awaitable[None]]

SETTINGS = web.AppKey("settings", DataPlaneSettings)
HOLDER = web.AppKey("holder", SnapshotHolder)
GATE = web.AppKey("gate", Gate)
ADAPTERS = web.AppKey("adapters", Mapping[str, Adapter])
RANDOM = web.AppKey("random", random.Random)
CHECKED_KEYS = web.AppKey("checked_keys", set[bytes])  # hashes of keys whose checksum was verified
RECORDS = web.AppKey("records", Records)
HEALTH = web.AppKey("health", Health)
RETRY_BUDGET = web.AppKey("retry_budget", RetryBudget)
LEASE_WAIT: web.AppKey[LeaseWait | None] = web.AppKey("lease_wait")


EDGE = web.AppKey("edge", Edge)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
# New request ids: 96 random bits from a generator seeded by the OS once per process (ids only need to be
# unique, not secret; a getrandom syscall per request cost more than the rest of making one).
_id_bits = random.Random(os.urandom(32)).getrandbits


class _WithHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def request_id(request: _WithHeaders) -> str:
    """Echo the client's ``x-request-id`` when it is short and plain, so it can be correlated; else a new one."""
    sent = request.headers.get("x-request-id")
    if sent is not None and _REQUEST_ID_RE.match(sent):
        return sent
    return f"req_{_id_bits(96):024x}"


def tollway_headers(rid: str, snapshot: str, provider: str = "", deployment: str = "",
                    attempts: int = 0) -> dict[str, str]:
    return {"x-request-id": rid, "x-tollway-snapshot": snapshot, "x-tollway-provider": provider,
            "x-tollway-deployment": deployment, "x-tollway-attempts": str(attempts)}


def error_response(err: ApiError, headers: dict[str, str]) -> web.Response:
    """An OpenAI-style error answer (``ApiError.body``)."""
    return web.Response(status=err.status, body=err.body(), headers=headers, content_type="application/json")
