"""``GET /admin/v1/controlplane``: the replicas, who holds the singleton duties, the store's health, and each
replica's view of the data planes (``gatectl controlplane status``).

Answers ``{"replica": the one answering, "store": {"backend", "healthy", "latencyMs", "error"},
"dutyHolder": replica or "", "duties": {duty: replica or ""}, "replicas": [{"replica", "adminUrl", "grpcTarget",
"startedAt", "holdsDuties", "dataplanes": [node ids connected to it], "lastSeen"}]}``. Replicas are those present
in the store (their lease alive); the answering one always appears, as it sees itself now. No secret is in it:
the store is named by its backend, not its URL.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from controlplane.ha.election import DUTIES, Election
from controlplane.ha.shared import Presence, ReplicaSync
from controlplane.store.base import Store, StoreError
from controlplane.store.etcd import EtcdStore


class HaStatus:
    def __init__(self, store: Store, election: Election, sync: ReplicaSync) -> None:
        self._store = store
        self._election = election
        self._sync = sync

    async def status(self) -> dict[str, Any]:
        started = time.monotonic()
        error = ""
        try:
            await self._store.get("/tollway/meta/generation")
        except StoreError as e:
            error = str(e)
        latency = round((time.monotonic() - started) * 1000, 1)
        me = self._sync.presence(time.time())
        replicas = {p.replica: p for p in self._sync.replicas}
        replicas[me.replica] = me
        holder = next((p.replica for p in replicas.values() if p.holds_duties), "")
        return {
            "replica": me.replica,
            "store": {"backend": "etcd" if isinstance(self._store, EtcdStore) else "embedded",
                      "healthy": not error, "latencyMs": latency, "error": error},
            "dutyHolder": holder,
            "duties": dict.fromkeys(DUTIES, holder),
            "replicas": [_replica_json(p) for p in sorted(replicas.values(), key=lambda p: p.replica)],
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _replica_json(p: Presence) -> dict[str, Any]:
    return {"replica": p.replica, "adminUrl": p.admin_url, "grpcTarget": p.grpc_target,
            "startedAt": _iso(p.started), "holdsDuties": p.holds_duties, "dataplanes": list(p.dataplanes),
            "lastSeen": _iso(p.seen)}


HA_STATUS = web.AppKey("ha_status", HaStatus)


def add_ha_routes(app: web.Application, status: HaStatus) -> None:
    app[HA_STATUS] = status
    app.router.add_get("/admin/v1/controlplane", _status)


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HA_STATUS].status())
