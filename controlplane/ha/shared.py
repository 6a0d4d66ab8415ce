"""What the replicas share through the store, written and read on every election tick (``ttl / 3``).

Keys::

    /tollway/ha/replicas/{replica}           JSON presence, under the replica's etcd lease (gone when it dies):
                                             its addresses, whether it holds the duties, its connected data
                                             planes, and its rate-limit demand board (``RateBoard.local``)
    /tollway/dataplanes/{node}/{replica}     JSON registry record of a data plane as that replica saw it

Registry records are keyed by replica, so replicas never overwrite each other (no compare-and-swap needed); a
reader shows, per data plane, the connected record first, then the newest, and a record whose replica is no
longer present is shown disconnected (a killed replica cannot say so itself). A record is rewritten when it
changes, or when its ``last_seen`` is ``REFRESH_S`` old, not on every heartbeat. The duty holder deletes records
not seen for ``retention_s`` (fenced: ``controlplane.ha.election``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import orjson

from controlplane.ha.election import Election, EtcdElection
from controlplane.money.lease_service import RateBoard
from controlplane.push.discovery import DataPlaneRecord, Registry
from controlplane.push.fleet_health import DeploymentState
from controlplane.store.base import Store

log = logging.getLogger(__name__)

REPLICAS = "/tollway/ha/replicas/"
DATAPLANES = "/tollway/dataplanes/"
REFRESH_S = 10.0
_OPS_PER_TXN = 100  # under etcd's default 128 operations per transaction


def replica_key(replica: str) -> str:
    return f"{REPLICAS}{replica}"


def dataplane_key(node: str, replica: str) -> str:
    return f"{DATAPLANES}{node}/{replica}"


@dataclass(frozen=True)
class Presence:
    replica: str
    admin_url: str
    grpc_target: str
    started: float
    holds_duties: bool
    dataplanes: tuple[str, ...]  # connected to it
    rates: dict[str, dict[str, tuple[float, float, float]]]
    seen: float

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> Presence:
        d = orjson.loads(raw)
        return cls(str(d["replica"]), str(d["admin_url"]), str(d["grpc_target"]), float(d["started"]),
                   bool(d["holds_duties"]), tuple(d["dataplanes"]),
                   {s: {n: (float(v[0]), float(v[1]), float(v[2])) for n, v in nodes.items()}
                    for s, nodes in d["rates"].items()}, float(d["seen"]))


def record_json(r: DataPlaneRecord, replica: str) -> bytes:
    d = asdict(r)
    d["replica"] = replica
    return orjson.dumps(d)


def record_of(raw: bytes) -> tuple[DataPlaneRecord, str]:
    d = orjson.loads(raw)
    replica = str(d.pop("replica"))
    d["health"] = tuple(DeploymentState(**h) for h in d["health"])
    return DataPlaneRecord(**d), replica


class ReplicaSync:
    """Publishes this replica's share and reads the others'. Driven by the election's ticks (``sync``)."""

    def __init__(self, store: Store, election: Election, registry: Registry, rates: RateBoard, *,
                 addresses: Callable[[], tuple[str, str]], retention_s: float = 86_400.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._election = election
        self._registry = registry
        self._rates = rates
        self._addresses = addresses
        self._retention = retention_s
        self._clock = clock
        self._started = clock()
        self._written: dict[str, DataPlaneRecord] = {}  # node -> the record last written for this replica
        self.replicas: tuple[Presence, ...] = ()  # as of the last sync
        self.pruned = 0

    async def sync(self) -> None:
        now = self._clock()
        self._registry.forget_before(now - self._retention)
        await self._publish(now)
        await self._read(now)
        if self._election.is_held():
            await self._prune(now)

    def presence(self, now: float) -> Presence:
        admin, grpc_target = self._addresses()
        local = self._registry.local()
        return Presence(self._election.replica, admin, grpc_target, self._started, self._election.is_held(),
                        tuple(sorted(r.node_id for r in local if r.connected)), self._rates.local(), now)

    async def _publish(self, now: float) -> None:
        if isinstance(self._election, EtcdElection) and self._election.lease_id:
            await self._election.put_presence(replica_key(self._election.replica), self.presence(now).to_json())
        due = []
        for r in self._registry.local():
            old = self._written.get(r.node_id)
            if old is None or replace(old, last_seen=r.last_seen) != r or r.last_seen - old.last_seen >= REFRESH_S:
                due.append(r)
        for i in range(0, len(due), _OPS_PER_TXN):
            part = due[i:i + _OPS_PER_TXN]
            await self._store.txn([], [(dataplane_key(r.node_id, self._election.replica),
                                        record_json(r, self._election.replica)) for r in part])
            self._written.update((r.node_id, r) for r in part)

    async def _read(self, now: float) -> None:
        present = []
        for kv in (await self._store.list(REPLICAS)).items:
            try:
                present.append(Presence.from_json(kv.value))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable replica record at %s", kv.key)
        self.replicas = tuple(present)
        me = self._election.replica
        live = {p.replica for p in present} | {me}
        self._rates.set_remote([p.rates for p in present if p.replica != me])
        remote = []
        for kv in (await self._store.list(DATAPLANES)).items:
            try:
                record, replica = record_of(kv.value)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable data-plane record at %s", kv.key)
                continue
            if replica == me:
                continue
            remote.append(record if replica in live else replace(record, connected=False))
        self._registry.remote = tuple(remote)

    async def _prune(self, now: float) -> None:
        old = []
        for kv in (await self._store.list(DATAPLANES)).items:
            try:
                record, _ = record_of(kv.value)
            except (ValueError, KeyError, TypeError):
                old.append(kv.key)  # unreadable: nobody can show it
                continue
            if record.last_seen < now - self._retention:
                old.append(kv.key)
        for i in range(0, len(old), _OPS_PER_TXN):
            result = await self._store.txn(self._election.fence(), deletes=old[i:i + _OPS_PER_TXN])
            if not result.succeeded:
                return  # no longer the holder: the one that is prunes
            self.pruned += len(old[i:i + _OPS_PER_TXN])
        if old:
            log.info("pruned %d data-plane records not seen for %.0f s", len(old), self._retention)
