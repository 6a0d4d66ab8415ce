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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from controlplane.errors import Conflict, InvalidPolicy, InvalidRequest, NotFound, Problem
from controlplane.policy import audit, engine
from controlplane.policy.engine import ApplyPlan, Change, Document, PolicyState, ResourceId, Stored
from controlplane.policy.resources import KIND_ALIASES, Kind
from controlplane.store.base import Compare, Store
from controlplane.store.layout import GENERATION, RESOURCES, history_key, resource_key
from tollway import keyformat

_CONSISTENT_READ_ATTEMPTS = 5


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of an apply or rollback: the generation now current, whether it wrote, and the changes."""

    revision: int
    applied: bool
    changes: tuple[Change, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision, "applied": self.applied,
            "changes": [{"op": c.op, "kind": c.kind, "name": c.name, "source": c.source, "diff": c.diff()}
                        for c in self.changes],
        }


@dataclass(frozen=True)
class CreatedKey:
    """A new key. ``secret`` exists only here: the store keeps its hash."""

    name: str
    secret: str
    hint: str
    revision: int


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
                 on_commit: Callable[[int], None] | None = None) -> None:
        """``on_commit(generation)`` is called after every successful write (metrics); it must not block."""
        self._store = store
        self._clock = clock
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
            raise InvalidPolicy([_referrer(p, k, name) for p in plan.problems])
        return await self.commit(plan, who)

    async def create_key(self, name: str, tenant: str, *, who: str, project: str | None = None,
                         routes: Sequence[str] = (), expires_at: int | None = None) -> CreatedKey:
        """Generate a key, store its hash and hint; ``Conflict`` when the name is taken."""
        state = await self.state()
        if ("ApiKey", name) in state.resources:
            raise Conflict(f"ApiKey {name!r} already exists")
        secret = keyformat.generate_key()
        hint = keyformat.hint(secret)
        document = {
            "apiVersion": "tollway.dev/v1", "kind": "ApiKey", "metadata": {"name": name},
            "spec": {"tenant": tenant, "project": project, "routes": list(routes),
                     "hash": "sha256:" + keyformat.hash_key(secret).hex(), "hint": hint, "expiresAt": expires_at},
        }
        plan = engine.plan_apply(state, [Document("request", document)])
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        revision = await self.commit(plan, who)
        return CreatedKey(name, secret, hint, revision)

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
                       expected_revision: int | None = None) -> ApplyResult:
        """Restore the policy as of generation ``to_revision`` (0: empty), as a new generation."""
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
        plan = engine.plan_restore(state, engine.undo(entries), f"generation {to_revision}")
        return await self._finish(plan, who, dry_run)

    async def commit(self, plan: ApplyPlan, who: str) -> int:
        """Write a valid plan as the next generation, guarded by the generation it was computed against."""
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        base = plan.base
        generation = base.generation + 1
        writes = plan.writes
        # The audit chain (controlplane.policy.audit): the entry carries the previous entry's hash, and the generation
        # key records this entry's hash as the head, all in the one transaction.
        entry = audit.seal(engine.history_entry(generation, self._clock(), who, writes), await self._head(base))
        puts = [(resource_key(c.kind, c.name), c.stored.value) for c in writes if c.stored is not None]
        puts.append((GENERATION, orjson.dumps({"generation": generation, "head": entry["hash"]})))
        puts.append((history_key(generation), orjson.dumps(entry)))
        deletes = [resource_key(c.kind, c.name) for c in writes if c.op == "delete"]
        result = await self._store.txn([Compare(GENERATION, base.lock_revision)], puts, deletes)
        if not result.succeeded:
            raise Conflict(f"the policy changed since generation {base.generation} was read; nothing was written")
        if self._cache is base or self._cache.lock_revision < result.revision:
            self._cache = engine.after_commit(plan, generation, result.revision)
        if self._on_commit is not None:
            self._on_commit(generation)
        return generation

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

    async def _finish(self, plan: ApplyPlan, who: str, dry_run: bool) -> ApplyResult:
        if plan.problems:
            raise InvalidPolicy(plan.problems)
        if plan.is_noop or dry_run:
            self._learn(plan)
            return ApplyResult(plan.base.generation, False, plan.changes)
        generation = await self.commit(plan, who)
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


def _referrer(problem: Problem, kind: str, name: str) -> Problem:
    """Turn "X refers to a missing Y" into "cannot delete Y: X refers to it" for delete's answer."""
    return Problem(problem.source, problem.kind, problem.name, problem.field,
                   f"refers to {kind} {name!r}, which cannot be deleted while referred to ({problem.message})")
