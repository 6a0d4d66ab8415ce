"""The policy as kept in the store: read it, and change it only through guarded, all-or-nothing transactions.

Every write (apply, delete, key creation, rollback) is ONE store transaction that compares the generation key's
``mod_revision`` with the one the plan was computed against, and puts the changed resources, the new generation
and its history entry together (see ``controlplane.store.layout``). A concurrent writer makes the compare fail and the
caller gets ``Conflict``; nothing is ever half written.

The repository caches the last policy it read (parsed models included). The cache is checked against the
generation key on every operation: all policy writes bump that key in the same transaction, so an equal
``mod_revision`` proves the cache current. A stale cache at worst costs a relist; a write computed from it
fails the compare. Resources whose stored bytes did not change are not parsed again on a relist.

Errors: ``controlplane.errors`` (``InvalidPolicy``, ``Conflict``, ``NotFound``, ``InvalidRequest``) and the
store's ``StoreError`` tree, passed through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from controlplane.errors import (
    AlreadyExists,
    Conflict,
    InUse,
    InvalidPolicy,
    InvalidRequest,
    KeyRevoked,
    NotFound,
    RolloutInProgress,
)
from controlplane.policy import audit, engine, key_lifecycle
from controlplane.policy.engine import ApplyPlan, Change, Document, PolicyState, ResourceId, Stored
from controlplane.policy.key_lifecycle import KeptKey
from controlplane.policy.resources import KIND_ALIASES, Kind
from controlplane.store.base import Compare, Store
from controlplane.store.layout import GENERATION, RESOURCES, ROLLOUT, history_key, resource_key
from tollway import keyformat

_CONSISTENT_READ_ATTEMPTS = 5
MAX_OVERLAP_SECONDS = 366 * 86400  # an old secret kept longer than a year is not a rotation


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of an apply or rollback: the generation now current, whether it wrote, and the changes."""

    revision: int
    applied: bool
    changes: tuple[Change, ...]
    kept: tuple[KeptKey, ...] = ()  # rollback: keys it left as they are (see ``key_lifecycle.split_rollback``)

    def to_json(self, bodies: bool = False) -> dict[str, Any]:
        """The answer of apply and rollback; ``bodies`` adds each change's canonical ``before`` and ``after``
        (``gatectl diff`` renders them as YAML)."""
        out: dict[str, Any] = {
            "revision": self.revision, "applied": self.applied,
            "changes": [{"op": c.op, "kind": c.kind, "name": c.name, "source": c.source, "diff": c.diff()}
                        | ({"before": c.before, "after": c.after} if bodies and c.op != "unchanged" else {})
                        for c in self.changes],
        }
        if self.kept:
            out["keptKeys"] = [k.to_json() for k in self.kept]
        return out


@dataclass(frozen=True)
class CreatedKey:
    """A new key. ``secret`` exists only here: the store keeps its hash."""

    name: str
    secret: str
    hint: str
    revision: int


@dataclass(frozen=True)
class RotatedKey(CreatedKey):
    """A key's new secret; the old one is accepted until ``previous_expires_at`` (unix seconds)."""

    previous_expires_at: int


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_kind(text: str) -> Kind:
    """``Tenant``, ``tenants``, ``key``… to the kind; ``InvalidRequest`` when unknown."""
    kind = KIND_ALIASES.get(text.lower())
    if kind is None:
        raise InvalidRequest(f"unknown kind {text!r}")
    return kind


class Repository:
    """Task-safe within one event loop; several repositories (processes) may share one store."""

    def __init__(self, store: Store, clock: Callable[[], str] = utc_now,
                 on_commit: Callable[[int], None] | None = None,
                 unix_clock: Callable[[], float] = time.time) -> None:
        """``on_commit(generation)`` is called after every successful write (metrics); it must not block.
        ``clock`` stamps history entries; ``unix_clock`` is the time of key rotations and revocations."""
        self._store = store
        self._clock = clock
        self._unix_clock = unix_clock
        self._on_commit = on_commit
        self._cache = PolicyState()

    @property
    def store(self) -> Store:
        return self._store

    async def state(self) -> PolicyState:
        """The current policy, read consistently (all resources at one generation)."""
        cached = self._cache
        gen = await self._store.get(GENERATION)
        if (gen.mod_revision if gen else 0) == cached.lock_revision:
            return cached
        for _ in range(_CONSISTENT_READ_ATTEMPTS):
            listing = await self._store.list(RESOURCES)
            gen = await self._store.get(GENERATION)
            # The generation moves with every policy write, so if it was last written at or before the
            # listing's revision, the listing shows exactly that generation.
            if gen is None or gen.mod_revision <= listing.revision:
                break
        else:
            raise Conflict("the policy kept changing while it was being read; try again")
        resources: dict[ResourceId, Stored] = {}
        for kv in listing.items:
            kind, _, name = kv.key.removeprefix(RESOURCES).partition("/")
            old = cached.resources.get((kind, name))
            resources[(kind, name)] = old if old is not None and old.value == kv.value else Stored.decode(kv.value)
        fresh = PolicyState(_generation_of(gen.value) if gen else 0, gen.mod_revision if gen else 0, resources)
        self._cache = fresh
        return fresh

    async def get(self, kind: str, name: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """The generation and the canonical JSON of every resource of ``kind`` (or just ``name``)."""
        state = await self.state()
        items = state.items(parse_kind(kind), name)
        if name is not None and not items:
            raise NotFound(f"{parse_kind(kind)} {name!r} does not exist")
        return state.generation, [s.canonical for s in items]

    async def apply(self, documents: Iterable[Document], *, who: str, dry_run: bool = False,
                    expected_revision: int | None = None) -> ApplyResult:
        """Validate everything, then write every change at once; ``InvalidPolicy`` or ``Conflict`` otherwise."""
        state = await self.state()
        _expect(state, expected_revision)
        plan = engine.plan_apply(state, documents)
        return await self._finish(plan, who, dry_run)

    async def delete(self, kind: str, name: str, *, who: str, expected_revision: int | None = None) -> int:
        """Remove one resource; ``InvalidPolicy`` naming the referrers when anything still refers to it."""
        state = await self.state()
        _expect(state, expected_revision)
        k = parse_kind(kind)
        if (k, name) not in state.resources:
            raise NotFound(f"{k} {name!r} does not exist")
        plan = engine.plan_delete(state, k, name)
        if plan.problems:
            raise InUse(k, name, plan.problems)
        return await self.commit(plan, who)

    async def create_key(self, name: str, tenant: str, *, who: str, project: str | None = None,
                         routes: Sequence[str] = (), expires_at: int | None = None,
                         budget: Mapping[str, Any] | None = None,
                         rate_limits: Mapping[str, Any] | None = None) -> CreatedKey:
        """Generate a key, store its hash and hint; ``AlreadyExists`` when the name is taken. ``budget`` and
        ``rateLimits`` are the key's own, in the policy's form (validated like an applied document)."""
        state = await self.state()
        if ("ApiKey", name) in state.resources:
            raise AlreadyExists(f"ApiKey {name!r} already exists (rotate its secret with `gatectl keys rotate "
                                f"{name}`, or pick another name)")
        secret = keyformat.generate_key()
        hint = keyformat.hint(secret)
        spec: dict[str, Any] = {"tenant": tenant, "project": project, "routes": list(routes),
                                "hash": _hash_of(secret), "hint": hint, "expiresAt": expires_at}
        if budget is not None:
            spec["budget"] = dict(budget)
        if rate_limits is not None:
            spec["rateLimits"] = dict(rate_limits)
        document = {"apiVersion": "tollway.dev/v1", "kind": "ApiKey", "metadata": {"name": name}, "spec": spec}
        plan = engine.plan_apply(state, [Document("request", document)])
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        revision = await self.commit(plan, who)
        return CreatedKey(name, secret, hint, revision)

    async def rotate_key(self, name: str, *, who: str, overlap_seconds: int = 0) -> RotatedKey:
        """A new secret for key ``name``; the old one is accepted for ``overlap_seconds`` more, then refused."""
        if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
            raise InvalidRequest(f"'overlapSeconds' must be between 0 and {MAX_OVERLAP_SECONDS} (a year)")
        state, current = await self._live_key(name, "rotate")
        secret = keyformat.generate_key()
        hint = keyformat.hint(secret)
        now = int(self._unix_clock())
        after = key_lifecycle.rotated(current.canonical, _hash_of(secret), hint, now, overlap_seconds)
        revision = await self._rewrite_key(state, after, who, "rotate")
        old = [p for p in after["spec"].get("previousSecrets") or () if p["hash"] == current.canonical["spec"]["hash"]]
        return RotatedKey(name, secret, hint, revision, int(old[0]["expiresAt"]) if old else now)

    async def revoke_key(self, name: str, *, who: str) -> int:
        """Refuse every secret of key ``name`` from the next snapshot on; the generation written."""
        state, current = await self._live_key(name, "revoke")
        after = key_lifecycle.revoked(current.canonical, int(self._unix_clock()))
        return await self._rewrite_key(state, after, who, "revoke")

    async def _live_key(self, name: str, verb: str) -> tuple[PolicyState, Stored]:
        state = await self.state()
        current = state.resources.get(("ApiKey", name))
        if current is None:
            raise NotFound(f"ApiKey {name!r} does not exist")
        if key_lifecycle.is_revoked(current.canonical):
            raise KeyRevoked(f"ApiKey {name!r} is revoked; it cannot be {verb}d (create a new key instead)")
        return state, current

    async def _rewrite_key(self, state: PolicyState, document: dict[str, Any], who: str, action: str) -> int:
        plan = engine.plan_apply(state, [Document("request", document)])
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        return await self.commit(plan, who, action, rollout_guard=None)  # goes through during a rollout

    async def history(self, limit: int | None = None, *, full: bool = False) -> list[dict[str, Any]]:
        """History entries newest first (summaries, or with before/after when ``full``); pruned ones skipped."""
        state = await self.state()
        out: list[dict[str, Any]] = []
        generation = state.generation
        while generation > 0 and (limit is None or len(out) < limit):
            entry = await self._entry(generation)
            if entry is not None:
                out.append(entry if full else engine.history_summary(entry))
            generation -= 1
        return out

    async def history_entry(self, generation: int) -> dict[str, Any]:
        entry = await self._entry(generation)
        if entry is None:
            raise NotFound(f"no history entry for generation {generation}")
        return entry

    async def rollback(self, to_revision: int, *, who: str, dry_run: bool = False,
                       expected_revision: int | None = None, include_keys: bool = False) -> ApplyResult:
        """Restore the policy as of generation ``to_revision`` (0: empty), as a new generation. Keys stay as
        they are unless ``include_keys``, and even then a revoked or rotated-out secret never comes back."""
        state = await self.state()
        _expect(state, expected_revision)
        if not 0 <= to_revision <= state.generation:
            raise NotFound(f"generation {to_revision} does not exist (current: {state.generation})")
        entries = []
        for generation in range(state.generation, to_revision, -1):
            entry = await self._entry(generation)
            if entry is None:
                raise NotFound(f"history of generation {generation} is gone; cannot roll back past it")
            entries.append(entry)
        retired = key_lifecycle.retired_secrets(entries, state)
        target, kept = key_lifecycle.split_rollback(state, engine.undo(entries), retired, include_keys)
        plan = engine.plan_restore(state, target, f"generation {to_revision}")
        excluded = {k.name for k in kept if k.reason == "keys-excluded"}
        if plan.problems and excluded:  # a kept key refers to something the rollback removes: say how to proceed
            plan = replace(plan, problems=tuple(
                replace(p, message=f"{p.message} (the rollback keeps keys; --include-keys rolls them back too)")
                if p.kind == "ApiKey" and p.name in excluded else p for p in plan.problems))
        result = await self._finish(plan, who, dry_run, "rollback")
        return ApplyResult(result.revision, result.applied, result.changes, tuple(kept))

    async def commit(self, plan: ApplyPlan, who: str, action: str | None = None, *, rollout_guard: int | None = 0,
                     rollout: Mapping[str, Any] | None = None, also_put: Sequence[tuple[str, bytes]] = (),
                     also_delete: Sequence[str] = ()) -> int:
        """Write a valid plan as the next generation, guarded by the generation it was computed against.

        ``rollout_guard``: the ``mod_revision`` the staged-rollout record (``/tollway/rollout/current``) must have,
        0 (the default) that there is none, so no policy write slips into a rollout; None: no guard (key
        revocations and rotations). ``rollout`` goes into the history entry; ``also_put``/``also_delete`` are
        written in the same transaction (the rollout record)."""
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        if rollout_guard == 0:
            await self.refuse_during_rollout()
        base = plan.base
        generation = base.generation + 1
        writes = plan.writes
        # The audit chain (controlplane.policy.audit): the entry carries the previous entry's hash, and the generation
        # key records this entry's hash as the head, all in the one transaction.
        history = engine.history_entry(generation, self._clock(), who, writes, action)
        if rollout is not None:
            history["rollout"] = dict(rollout)
        entry = audit.seal(history, await self._head(base))
        puts = [(resource_key(c.kind, c.name), c.stored.value) for c in writes if c.stored is not None]
        puts.append((GENERATION, orjson.dumps({"generation": generation, "head": entry["hash"]})))
        puts.append((history_key(generation), orjson.dumps(entry)))
        puts.extend(also_put)
        deletes = [resource_key(c.kind, c.name) for c in writes if c.op == "delete"]
        deletes.extend(also_delete)
        guards = [Compare(GENERATION, base.lock_revision)]
        if rollout_guard is not None:
            guards.append(Compare(ROLLOUT, rollout_guard))
        result = await self._store.txn(guards, puts, deletes)
        if not result.succeeded:
            if rollout_guard == 0:
                await self.refuse_during_rollout()  # a rollout started meanwhile: say so
            raise Conflict(f"the policy changed since generation {base.generation} was read; nothing was written")
        if self._cache is base or self._cache.lock_revision < result.revision:
            self._cache = engine.after_commit(plan, generation, result.revision)
        if self._on_commit is not None:
            self._on_commit(generation)
        return generation

    async def refuse_during_rollout(self) -> None:
        """``RolloutInProgress`` naming the active staged rollout, if there is one."""
        kv = await self._store.get(ROLLOUT)
        if kv is None:
            return
        r = orjson.loads(kv.value)
        canary = ", ".join([*(f"region {x}" for x in r["canary"]["regions"]),
                            *(f"data plane {x}" for x in r["canary"]["dataplanes"])])
        raise RolloutInProgress(
            f"rollout {r['id']} (generation {r['targetRevision']} on the canary {canary}, started by {r['who']} "
            f"at {r['started']}) is in progress; nothing was written. Promote it (`gatectl rollout promote`) or "
            "abort it (`gatectl rollout abort`) first; key revocations and rotations go through during a rollout")

    async def _head(self, base: PolicyState) -> str:
        """The hash the next history entry chains to: the head the generation key records (read at the
        revision the plan is guarded by; a newer one fails the write anyway), else that of the newest entry."""
        if base.generation == 0:
            return audit.GENESIS
        gen = await self._store.get(GENERATION)
        if gen is None or gen.mod_revision != base.lock_revision:
            raise Conflict(f"the policy changed since generation {base.generation} was read; nothing was written")
        head = audit.head_of(gen.value)
        if head is not None:
            return head
        previous = await self._entry(base.generation)  # written before entries were chained
        return audit.entry_hash(previous) if previous is not None else audit.GENESIS

    async def _finish(self, plan: ApplyPlan, who: str, dry_run: bool, action: str | None = None) -> ApplyResult:
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        if plan.is_noop or dry_run:
            self._learn(plan)
            return ApplyResult(plan.base.generation, False, plan.changes)
        generation = await self.commit(plan, who, action)
        return ApplyResult(generation, True, plan.changes)

    def _learn(self, plan: ApplyPlan) -> None:
        """Remember documents that validated to what is stored, so the next identical apply skips pydantic."""
        base = plan.base
        learned = [c for c in plan.changes if c.op == "unchanged" and c.stored is not base.resources.get(c.id)]
        if learned and self._cache is base:
            self._cache = PolicyState(base.generation, base.lock_revision, engine.merged(base, learned))

    async def _entry(self, generation: int) -> dict[str, Any] | None:
        kv = await self._store.get(history_key(generation))
        if kv is None:
            return None
        entry: dict[str, Any] = orjson.loads(kv.value)
        return entry


def _generation_of(value: bytes) -> int:
    generation: int = orjson.loads(value)["generation"]
    return generation


def _expect(state: PolicyState, expected_revision: int | None) -> None:
    if expected_revision is not None and expected_revision != state.generation:
        raise Conflict(f"expected generation {expected_revision}, but the policy is at generation "
                       f"{state.generation}; nothing was written")


def _hash_of(secret: str) -> str:
    return "sha256:" + keyformat.hash_key(secret).hex()
