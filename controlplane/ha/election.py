"""The replicas' election: one holds the singleton duties, chosen with etcd's own primitives.

Each replica holds one etcd lease (``ttl_s``), refreshed every ``ttl_s / 3``. The duties belong to whoever
created ``LEADER`` (create-if-absent, attached to its lease): when the holder dies its lease expires, etcd deletes
the key, and the next replica to try creates it, within ``ttl_s * 4 / 3`` of the death. A replica that stops
cleanly revokes its lease, so the handover is immediate.

Fencing: ``fence()`` is ``[Compare(LEADER, revision the holder created it at)]``. Every write of a duty to etcd
carries it, so a replica that believes it still holds the duties after losing them (a pause longer than its lease,
a partition) writes nothing: the key was deleted and recreated at another revision. A duty that writes elsewhere
(usage retention, in PostgreSQL) passes ``token()``, that same revision, as a fencing token: etcd revisions only
grow, so the usage store refuses a token older than one it has already seen. ``is_held`` also turns false
locally once the last refresh is older than the lease, so a cut-off holder stops starting work.

Duties that need no election: grant reclaim happens inside every ledger compare-and-swap (a grant past its
expiry and grace is dropped by whichever replica next writes that scope), and the rollout decision, though run
on the holder only, guards each step on the rollout record's revision.

On the embedded store (one machine, one replica) ``SoleElection`` holds the duties always, and fences nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from controlplane.store.base import Compare, Store, StoreError
from controlplane.store.etcd import EtcdStore

log = logging.getLogger(__name__)

LEADER = "/tollway/ha/leader"
DUTIES = ("alert-delivery", "alert-pruning", "usage-retention", "dataplane-pruning", "rollout-decision")


class Duty(Protocol):
    """What a singleton duty asks before it works and adds to every write."""

    def is_held(self) -> bool: ...

    def fence(self) -> list[Compare]: ...

    def token(self) -> int: ...


class Election(Protocol):
    replica: str
    lease_id: int  # the replica's etcd lease (0: none, the embedded store)

    def is_held(self) -> bool: ...

    def fence(self) -> list[Compare]: ...

    def token(self) -> int: ...

    async def run(self) -> None: ...

    async def resign(self) -> None: ...


class SoleElection:
    """The embedded store's: one replica, always the holder."""

    lease_id = 0

    def __init__(self, replica: str) -> None:
        self.replica = replica

    def is_held(self) -> bool:
        return True

    def fence(self) -> list[Compare]:
        return []

    def token(self) -> int:
        return 0  # no fencing: one replica

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def resign(self) -> None:
        return None


class EtcdElection:
    """Campaigns on an etcd store until cancelled. Task-safe on one loop; ``run`` is the only writer.

    ``on_tick`` is awaited after every refresh (the replica's shared-state sync rides on the same cadence and
    lease); its errors are logged, never fatal.
    """

    def __init__(self, store: EtcdStore, replica: str, *, ttl_s: float = 5.0,
                 on_tick: Callable[[], object] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.replica = replica
        self._ttl = max(2, round(ttl_s))
        self._on_tick = on_tick
        self._clock = clock
        self.lease_id = 0
        self._valid_until = 0.0  # local clock: the lease is surely alive until then
        self._revision = 0  # LEADER's mod_revision while this replica holds it
        self.ready = asyncio.Event()  # set after the first refresh (presence written, campaign tried)

    def is_held(self) -> bool:
        return self._revision > 0 and self._clock() < self._valid_until

    def fence(self) -> list[Compare]:
        return [Compare(LEADER, self._revision if self.is_held() else -1)]

    def token(self) -> int:
        """The fencing token of a write outside etcd: the leader key's revision, or -1 when not held (a store
        that checks tokens refuses it)."""
        return self._revision if self.is_held() else -1

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreError as e:
                log.warning("election: store unavailable (%s)", e)
                if self._clock() >= self._valid_until:
                    self._step_down("lease not refreshed in time")
            except Exception:  # top of a long-running loop: log and go on
                log.exception("election tick failed")
            if self._on_tick is not None:
                try:
                    result = self._on_tick()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as e:  # a sync failure leaves the last shared view; the next tick tries again
                    log.warning("replica sync failed: %s", e)
            self.ready.set()
            await asyncio.sleep(self._ttl / 3)

    async def tick(self) -> None:
        started = self._clock()
        if self.lease_id == 0:
            self.lease_id = await self._store.grant_lease(self._ttl)
            ttl = self._ttl
        else:
            ttl = await self._store.keep_alive(self.lease_id)
        if ttl <= 0:
            self._step_down("lease expired")
            self.lease_id = 0
            return
        self._valid_until = started + ttl - 0.5
        if self._revision:
            kv = await self._store.get(LEADER)
            if kv is None or kv.mod_revision != self._revision:
                self._step_down("the leader key changed hands")
            return
        value = orjson.dumps({"replica": self.replica, "since": time.time()})
        result = await self._store.put_leased([Compare(LEADER, 0)], LEADER, value, self.lease_id)
        if result.succeeded:
            self._revision = result.revision
            log.info("replica %s now holds the singleton duties (revision %d)", self.replica, result.revision)

    def _step_down(self, why: str) -> None:
        if self._revision:
            log.warning("replica %s no longer holds the singleton duties: %s", self.replica, why)
        self._revision = 0

    async def put_presence(self, key: str, value: bytes) -> None:
        """Write ``key`` under this replica's lease (it vanishes with the replica)."""
        await self._store.put_leased([], key, value, self.lease_id)

    async def resign(self) -> None:
        """Revoke the lease (deleting the leader key if held), so another replica takes over at once."""
        lease, self.lease_id, self._revision = self.lease_id, 0, 0
        if lease:
            try:
                await self._store.revoke_lease(lease)
            except StoreError as e:
                log.warning("could not revoke the replica lease (it expires on its own): %s", e)


def open_election(store: Store, replica: str, ttl_s: float,
                  on_tick: Callable[[], object] | None = None) -> Election:
    if isinstance(store, EtcdStore):
        return EtcdElection(store, replica, ttl_s=ttl_s, on_tick=on_tick)
    return SoleElection(replica)


async def run_while_held(duty: Duty, interval_s: float, work: Callable[[], object], name: str) -> None:
    """Call ``work`` (a coroutine function) every ``interval_s`` while ``duty`` is held, until cancelled.

    The first run is as soon as the duty is held (checked every second); failures are logged and retried at
    the next interval."""
    next_run = 0.0
    while True:
        now = time.monotonic()
        if duty.is_held() and now >= next_run:
            next_run = now + interval_s
            try:
                result = work()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:  # top of a long-running loop: log, try again next interval
                log.warning("%s failed (retrying in %.0f s): %s", name, interval_s, e)
        await asyncio.sleep(min(1.0, interval_s))
