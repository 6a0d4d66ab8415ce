"""Watch the store, compile the policy, keep the latest snapshot of every region.

The loop is etcd's list-then-watch: list every resource at revision R, compile, then watch from R + 1, applying
each batch of events to an in-memory copy of the resources. A watch that ends with ``Compacted`` or
``StoreUnavailable`` (or anything else) is followed by a fresh listing, so no change is ever missed: the
listing is the whole truth at its revision. Compiling is pure and runs in a worker thread, debounced, so a
burst of writes costs one compile and the event loop stays free to serve streams.

Readers wait on ``changed`` (an ``asyncio.Condition``) and read ``snapshot(region)``; they see the latest value
only, so intermediate versions are skipped, never queued.

During a staged rollout it keeps two snapshots per region: the newest policy's, for the canary, and the stable one
(``controlplane.rollout.stable``: the rollout's base generation with the keys' current secrets), for every other
data plane; ``snapshot_for(region, node)`` picks. Both are compiled by the same publish, so a key revocation
reaches both at once. The rollout record (``/tollway/rollout/current``) is watched with the resources, in one
watch: a rollout's step is one transaction (its record and its generation), so it arrives as one batch, and the
publisher takes the new resources and the new assignment together (``rollout_pin`` turns the record into the
base policy and the canary before either is taken). So on every replica sharing the store, no data plane outside
the canary ever runs the rollout's generation, and a start, promote or abort reaches data planes within a watch's
delay, not a poll's.

Errors: a policy that fails ``check_references`` (which the admin API refuses to write, so only a hand-edited
store gets there) is logged and the previous snapshots stay; store errors are retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from controlplane.policy.compile import AnyResource, KeyEncodings, PolicySet, build_snapshots
from controlplane.policy.resources import KINDS, Kind
from controlplane.rollout.stable import stable_policy
from controlplane.rollout.state import Canary
from controlplane.store.base import Compacted, Event, KeyValue, Store, StoreUnavailable
from controlplane.store.layout import RESOURCES, ROLLOUT, decode_resource
from tollway.backoff import Backoff
from tollway.pb import snapshot_pb2 as pb

log = logging.getLogger(__name__)

# One watch covers the resources and the rollout record (the longest prefix of both); other keys under it are
# skipped.
WATCHED = "/tollway/r"

RolloutPin = Callable[[bytes], Awaitable[tuple[PolicySet, Canary]]]
"""The rollout record's bytes -> (the base policy the others run, the canary); ``controlplane.rollout.manager``."""


class Publisher:
    """Owns the latest snapshot per region. Task-safe on one event loop; ``run`` is its only writer.

    ``snapshot(region)`` returns an immutable value (callers must not modify it): the latest snapshot of the
    region, or None while a region the policy does not mention is being compiled (off the loop, like every
    compile) for the data plane that asked for it; ``changed`` is notified when it is there.

    Without ``rollout_pin`` the rollout record is ignored (every data plane gets the newest policy).
    """

    def __init__(self, store: Store, *, debounce: float = 0.05, backoff: Backoff | None = None,
                 rollout_pin: RolloutPin | None = None) -> None:
        self._store = store
        self._rollout_pin = rollout_pin
        self._debounce = debounce
        self._backoff = backoff or Backoff()
        self._resources = _Resources()  # as of store revision ``_watched``
        self._snapshots: dict[str, pb.Snapshot] = {}
        # The rollout record as of ``_watched``: (its mod_revision, its base policy, its canary), or None.
        self._pin: tuple[int, PolicySet, Canary] | None = None
        self._canary: Canary | None = None  # the published one: set with ``_stable``, by the same publish
        self.rollout_revision = 0  # the mod_revision of the rollout record the published snapshots serve (0: none)
        self._stable: dict[str, pb.Snapshot] = {}  # per region, what data planes outside the canary run
        self._stable_keys = KeyEncodings()
        self._keys = KeyEncodings()  # so a recompile after one change re-encodes one key, not 100,000
        self._requested: set[str] = set()  # regions some data plane asked for
        self._watched = 0  # store revision ``_resources`` reflects
        self._dirty = asyncio.Event()
        self._publishing = asyncio.Lock()
        self.changed = asyncio.Condition()
        self.revision = 0  # store revision the published snapshots reflect (0: nothing published yet)
        self.last_error = ""
        self.listings = 0  # every listing after the first follows a compaction, a lost watch or an error

    @property
    def is_ready(self) -> bool:
        return self.revision > 0

    def regions(self) -> list[str]:
        return sorted(self._snapshots)

    def snapshot(self, region: str) -> pb.Snapshot | None:
        snapshot = self._snapshots.get(region)
        if snapshot is None and region not in self._requested:
            # Asked for a region no tenant allows (yet): the compile loop builds its empty but valid snapshot.
            self._requested.add(region)
            self._dirty.set()
        return snapshot

    def version(self, region: str) -> str:
        """The version of the region's latest snapshot ("" while there is none)."""
        snapshot = self.snapshot(region)
        return snapshot.version if snapshot is not None else ""

    def snapshot_for(self, region: str, node_id: str) -> pb.Snapshot | None:
        """What data plane ``node_id`` of ``region`` should run: the latest snapshot, unless a rollout is active
        and the data plane is outside its canary (then the stable one)."""
        latest = self.snapshot(region)
        canary = self._canary
        if canary is None or canary.includes(region, node_id):
            return latest
        return self._stable.get(region, latest)

    def version_for(self, region: str, node_id: str) -> str:
        snapshot = self.snapshot_for(region, node_id)
        return snapshot.version if snapshot is not None else ""

    def stable_version(self, region: str) -> str:
        """The version data planes outside the canary run ("" with no rollout or none compiled yet)."""
        snapshot = self._stable.get(region) if self._canary is not None else None
        return snapshot.version if snapshot is not None else ""

    async def run(self) -> None:
        """List, compile and watch until cancelled."""
        compiler = asyncio.create_task(self._compile_loop(), name="publisher-compile")
        try:
            await self._watch_loop()
        finally:
            compiler.cancel()
            await asyncio.gather(compiler, return_exceptions=True)

    async def _watch_loop(self) -> None:
        failures = 0
        while True:
            try:
                listing = await self._store.list(WATCHED)
                self.listings += 1
                items = [kv for kv in listing.items if kv.key.startswith(RESOURCES)]
                # Decoding 100k resources takes seconds: off the loop, like compiling.
                resources = await asyncio.to_thread(_Resources.decode, items, self._resources)
                pin = await self._pin_of(next((kv for kv in listing.items if kv.key == ROLLOUT), None))
                self._resources, self._watched, self._pin = resources, listing.revision, pin
                await self._publish()
                failures = 0
                async for batch in self._store.watch(WATCHED, listing.revision + 1):
                    records = [e for e in batch if e.key == ROLLOUT]
                    if records:  # resolved first, so the batch's resources and its pin are taken together
                        last = records[-1]
                        pin = await self._pin_of(None if last.type == "delete" else
                                                 KeyValue(last.key, last.value, last.mod_revision))
                    self._apply(batch)
                    if records:
                        self._pin = pin
                    self._dirty.set()
                    failures = 0
                log.warning("store watch ended at revision %d; relisting", self._watched)
            except Compacted as exc:
                log.info("watch compacted (oldest revision %d); relisting", exc.compact_revision)
                continue
            except StoreUnavailable as exc:
                self.last_error = f"store unavailable: {exc}"
                log.warning("store unavailable: %s", exc)
            except Exception as exc:  # top of a long-running loop: log, count, go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("publisher loop failed; relisting")
            await asyncio.sleep(self._backoff.delay(failures))
            failures += 1

    async def _pin_of(self, record: KeyValue | None) -> tuple[int, PolicySet, Canary] | None:
        """What the rollout ``record`` assigns (the one held if it is the same record)."""
        if record is None or self._rollout_pin is None:
            return None
        if self._pin is not None and self._pin[0] == record.mod_revision:
            return self._pin
        base, canary = await self._rollout_pin(record.value)
        return record.mod_revision, base, canary

    def _apply(self, batch: list[Event]) -> None:
        for event in batch:
            self._watched = max(self._watched, event.mod_revision)
            if not event.key.startswith(RESOURCES):
                continue
            resource = None if event.type == "delete" else _decode(KeyValue(event.key, event.value, event.mod_revision))
            if resource is None:
                self._resources.delete(event.key)
            else:
                self._resources.put(event.key, resource, event.value)

    async def _compile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)  # let a burst of writes land; one compile covers them all
            self._dirty.clear()
            try:
                await self._publish()
            except Exception:  # top of a long-running loop: keep the old snapshots, log and count
                self.last_error = "publishing failed; previous snapshots kept"
                log.exception("publishing policy failed; keeping the previous snapshots")

    async def _publish(self) -> None:
        # One publish at a time, each compiling the resources as they are when it starts: a later publish always
        # reflects a later state, so an old compile can never overwrite a newer one.
        async with self._publishing:
            policy, revision = self._resources.policy(), self._watched
            requested = frozenset(self._requested)
            pin = self._pin
            snapshots = await asyncio.to_thread(_compile, policy, requested, self._keys)
            stable: dict[str, pb.Snapshot] | None = {}
            if pin is not None and snapshots is not None:
                stable = await asyncio.to_thread(_compile, stable_policy(pin[1], policy), requested,
                                                 self._stable_keys)
            if snapshots is None or stable is None:
                self.last_error = f"policy at store revision {revision} is inconsistent; previous snapshots kept"
                return
            if self._requested - requested:  # asked for while the worker ran: the compile loop goes again
                self._dirty.set()
            previous, previous_stable = self._snapshots, self._stable
            self._snapshots, self._stable = snapshots, stable
            canary, previous_canary = None if pin is None else pin[2], self._canary
            self._canary, self.rollout_revision = canary, 0 if pin is None else pin[0]
            changed = sorted(r for r in snapshots.keys() | previous.keys() | stable.keys() | previous_stable.keys()
                             if snapshots.get(r, _EMPTY).version != previous.get(r, _EMPTY).version
                             or stable.get(r, _EMPTY).version != previous_stable.get(r, _EMPTY).version)
            first = self.revision == 0
            self.revision, self.last_error = max(revision, 1), ""
            if changed or first or canary != previous_canary:
                log.info("published store revision %d: changed regions %s", revision, ", ".join(changed) or "none")
                async with self.changed:
                    self.changed.notify_all()


_EMPTY = pb.Snapshot()


def _decode(kv: KeyValue) -> AnyResource | None:
    try:
        return decode_resource(kv)
    except ValueError as exc:  # pydantic.ValidationError and orjson.JSONDecodeError are both ValueErrors
        log.error("ignoring unreadable resource %s: %s", kv.key, exc)
        return None


class _Resources:
    """The resources as of one store revision: by store key, and by kind and name (what ``PolicySet`` holds).

    Kept in step on every event, so a recompile costs a copy of five dicts rather than a regrouping of 100k
    resources. Owned by the publisher's watch loop.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, AnyResource] = {}
        self._stored: dict[str, bytes] = {}  # store key -> the bytes ``_by_key[key]`` was decoded from
        self._by_kind: dict[Kind, dict[str, AnyResource]] = {kind: {} for kind in KINDS}

    @classmethod
    def decode(cls, items: Iterable[KeyValue], previous: _Resources | None = None) -> _Resources:
        """The resources of a listing. A resource whose stored bytes are those ``previous`` decoded is reused:
        after a compaction or a lost watch, relisting 100,000 keys then validates only what changed meanwhile
        (validating costs ~20 µs a resource; comparing bytes next to nothing)."""
        out = cls()
        for kv in items:
            resource = previous.reusable(kv) if previous is not None else None
            if resource is None:
                resource = _decode(kv)
            if resource is not None:
                out.put(kv.key, resource, kv.value)
        return out

    def reusable(self, kv: KeyValue) -> AnyResource | None:
        """The resource decoded from exactly ``kv``'s bytes at ``kv``'s key, if there is one."""
        return self._by_key.get(kv.key) if self._stored.get(kv.key) == kv.value else None

    def put(self, key: str, resource: AnyResource, stored: bytes) -> None:
        self.delete(key)
        self._by_key[key] = resource
        self._stored[key] = stored
        self._by_kind[resource.kind][resource.name] = resource

    def delete(self, key: str) -> None:
        old = self._by_key.pop(key, None)
        self._stored.pop(key, None)
        if old is not None:
            self._by_kind[old.kind].pop(old.name, None)

    def policy(self) -> PolicySet:
        return PolicySet.from_groups({kind: dict(group) for kind, group in self._by_kind.items()})


def _compile(policy: PolicySet, requested: frozenset[str], keys: KeyEncodings) -> dict[str, pb.Snapshot] | None:
    """One snapshot per region the policy mentions or a data plane asked for; None if inconsistent.

    Pure but for ``keys``, the memo of key encodings, which it also prunes of deleted keys.
    """
    snapshots = build_snapshots(policy, requested, keys)
    if not isinstance(snapshots, dict):
        shown = "; ".join(map(str, snapshots[:5]))
        log.error("policy in the store is inconsistent, keeping the previous snapshots: %s", shown)
        return None
    if len(keys) > len(policy.keys) + 1000:
        keys.retain(policy.keys.keys())
    return snapshots
