"""The data plane application's typed state and the headers every answer carries.

``AppState`` (under the one key ``STATE``) holds what the request path reads: the request fetches it once and
reads its fields as a compiled class's slots, where each ``app[KEY]`` was a call into aiohttp's
``Application.__getitem__`` (about 20 a request). ``create_app`` (``dataplane.api.app``) makes it; only
``adapters`` and ``alarms`` are set later, when the upstream client starts (``alarms``, the loop's timers, shares
its ticks among all requests; the loop is read from there, where ``asyncio.get_running_loop()`` would make a
``getpid`` system call each time). The objects behind it are owned by the event loop (``Gate``, ``Records``,
``Health``) or immutable (``DataPlaneSettings``).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Protocol

from aiohttp import web

from dataplane.api.connection.edge import Edge
from dataplane.core.gate import Gate
from dataplane.core.health import Health, RetryBudget
from dataplane.errors import ApiError
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.upstream.adapters import Adapter
from dataplane.upstream.alarms import Alarms

# Waits for the control plane's next lease answer (bounded); None without a lease client.
LeaseWait = Callable[[float], Awaitable[None]]



class AppState:
    """What the request path reads of the application, made once by ``create_app``."""

    settings: Final[DataPlaneSettings]
    holder: Final[SnapshotHolder]
    gate: Final[Gate]
    records: Final[Records]
    health: Final[Health]
    retry_budget: Final[RetryBudget]
    edge: Final[Edge]
    lease_wait: Final[LeaseWait | None]
    random: Final[random.Random]
    checked_keys: Final[set[bytes]]  # hashes of keys whose checksum was verified
    adapters: Mapping[str, Adapter]  # by provider type; set when the upstream client starts (``create_app``)
    alarms: Alarms  # the timers of the loop serving the requests, the upstream client's; set with ``adapters``

    def __init__(self, settings: DataPlaneSettings, holder: SnapshotHolder, gate: Gate, records: Records,
                 health: Health, retry_budget: RetryBudget, edge: Edge, lease_wait: LeaseWait | None) -> None:
        self.settings = settings
        self.holder = holder
        self.gate = gate
        self.records = records
        self.health = health
        self.retry_budget = retry_budget
        self.edge = edge
        self.lease_wait = lease_wait
        self.random = random.Random()
        self.checked_keys = set()
        self.adapters = {}


STATE = web.AppKey("state", AppState)

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
