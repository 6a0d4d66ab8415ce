"""A snapshot's keys in their runtime form: read in bulk as columns (``KeyColumns``), checked with set
operations, and looked up by hash through ``KeyTable``, which builds each ``Key`` on its first lookup.

100,000 keys per snapshot, one looked up per request: the bulk steps go ``_STEP`` at a time (one C call holding
the GIL each), so a thread building a runtime lets the event loop have it in between (``SnapshotHolder``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from dataplane.snapshot.tenancy import InvalidSnapshot, Key, Tenant, check_unique
from tollway.pb import snapshot_pb2 as pb

_T = TypeVar("_T")
_U = TypeVar("_U")

# What a (tenant, key allow list) pair may reach: (route names, models shown by GET /v1/models).
Access = tuple[frozenset[str], tuple[str, ...]]


# Bulk operations over a snapshot's keys go this many at a time: each step is one C call holding the GIL (about a
# millisecond), and between steps a thread building a runtime lets the event loop have it (``SnapshotHolder``).
_STEP = 4096


def _distinct(items: list[_T]) -> set[_T]:
    """``set(items)``, built ``_STEP`` at a time."""
    out: set[_T] = set()
    for i in range(0, len(items), _STEP):
        out.update(items[i:i + _STEP])
    return out


def distinct_pairs(a: list[_T], b: list[_U]) -> set[tuple[_T, _U]]:
    """``set(zip(a, b))`` (equal lengths), built ``_STEP`` at a time."""
    out: set[tuple[_T, _U]] = set()
    for i in range(0, len(a), _STEP):
        out.update(zip(a[i:i + _STEP], b[i:i + _STEP], strict=True))
    return out


@dataclass(frozen=True, slots=True)
class KeyColumns:
    """Every key of a snapshot as columns (position i is the snapshot's i-th key) plus an index by hash.

    Columns rather than an object per key: six lists of strings and ints instead of 100,000 more allocations
    (which also push the garbage collector towards full collections of a large heap while a snapshot installs).
    """

    index: Mapping[bytes, int]
    hashes: list[bytes]
    ids: list[str]
    tenants: list[str]
    projects: list[str]
    expires_at: list[int]
    routes: list[tuple[str, ...]]  # the key's own allow list; mostly the shared empty tuple
    # Secrets replaced by a rotation: hash -> (position of their key, unix seconds they are accepted until).
    retired: Mapping[bytes, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: pb.Snapshot) -> KeyColumns:
        """Read the keys in one pass; key ids must be unique and non-empty (raises like ``_unique``)."""
        hashes: list[bytes] = []
        ids: list[str] = []
        tenants: list[str] = []
        projects: list[str] = []
        expires_at: list[int] = []
        routes: list[tuple[str, ...]] = []
        # Keys of one tenant share one name string (a thousand strings rather than 100,000 copies to allocate,
        # keep and free when the runtime is replaced).
        names: dict[str, str] = {}
        # One pass with bound appends: each pass over a protobuf repeated field wraps every message anew.
        add = (hashes.append, ids.append, tenants.append, projects.append, expires_at.append, routes.append)
        add_hash, add_id, add_tenant, add_project, add_expires_at, add_routes = add
        name = names.setdefault
        for k in snap.keys:
            add_hash(k.hash)
            add_id(k.id)
            tenant = k.tenant
            add_tenant(name(tenant, tenant))
            add_project(k.project)
            add_expires_at(k.expires_at)
            add_routes(tuple(k.routes))
        unique_ids: set[str] = set()
        index: dict[bytes, int] = {}
        for i in range(0, len(hashes), _STEP):
            unique_ids.update(ids[i:i + _STEP])
            index.update(zip(hashes[i:i + _STEP], range(i, i + _STEP), strict=False))
        if len(unique_ids) != len(ids) or "" in unique_ids:
            check_unique("key", ids)
        return cls(index=index, hashes=hashes, ids=ids, tenants=tenants, projects=projects,
                   expires_at=expires_at, routes=routes,
                   retired=_retired(snap, ids, index) if snap.retired_secrets else {})

    def are_valid(self, tenants: Mapping[str, Tenant]) -> bool:
        """The rules of ``explain_invalid_keys``, checked in bulk with set operations (no error detail)."""
        if len(self.index) != len(self.hashes) or any(len(h) != 32 for h in self.hashes):
            return False  # a duplicate hash, or one of the wrong length
        if not _distinct(self.tenants) <= tenants.keys() or min(self.expires_at, default=0) < 0:
            return False
        used = {(t, p) for t, p in zip(self.tenants, self.projects, strict=True) if p}
        return all(project in tenants[tenant].projects for tenant, project in used)


def _retired(snap: pb.Snapshot, ids: list[str], index: Mapping[bytes, int]) -> dict[bytes, tuple[int, int]]:
    """The rotated-out secrets by hash; each must belong to a key of the snapshot, have an expiry and a hash of
    its own (raises ``InvalidSnapshot``)."""
    position = {key_id: i for i, key_id in enumerate(ids)}
    out: dict[bytes, tuple[int, int]] = {}
    for r in snap.retired_secrets:
        where = f"retired secret of key {r.key_id!r}"
        i = position.get(r.key_id)
        if i is None:
            raise InvalidSnapshot(f"{where}: no such key")
        if len(r.hash) != 32:
            raise InvalidSnapshot(f"{where}: hash is {len(r.hash)} bytes, expected 32 (sha256)")
        if r.hash in index or r.hash in out:
            raise InvalidSnapshot(f"{where}: its hash is already another secret's")
        if r.expires_at <= 0:
            raise InvalidSnapshot(f"{where}: no expiry (a retired secret is accepted only until it)")
        out[r.hash] = (i, r.expires_at)
    return out


def explain_invalid_keys(snap: pb.Snapshot, tenants: Mapping[str, Tenant]) -> None:
    """Raise ``InvalidSnapshot`` for the first invalid key in snapshot order (only called when there is one)."""
    seen: dict[bytes, str] = {}
    for k in snap.keys:
        where = f"key {k.id!r}"
        if len(k.hash) != 32:
            raise InvalidSnapshot(f"{where}: hash is {len(k.hash)} bytes, expected 32 (sha256)")
        if k.hash in seen:
            raise InvalidSnapshot(f"{where}: same hash as key {seen[k.hash]!r}")
        seen[k.hash] = k.id
        tenant = tenants.get(k.tenant)
        if tenant is None:
            raise InvalidSnapshot(f"{where}: tenant {k.tenant!r} does not exist")
        if k.project and k.project not in tenant.projects:
            raise InvalidSnapshot(f"{where}: project {k.project!r} is not a project of tenant {k.tenant!r}")
        if k.expires_at < 0:
            raise InvalidSnapshot(f"{where}: negative expires_at")
    raise AssertionError("_keys_are_valid refused keys that are all valid")


class KeyTable(Mapping[bytes, Key]):
    """The runtime's keys by hash: a read-only mapping that builds each ``Key`` on its first lookup.

    A snapshot carries 100,000 keys and a request looks up one: building every ``Key`` up front would cost
    seconds per snapshot for objects most requests never touch. Validation is not lazy: ``_build`` has checked
    every key before a table exists, so a lookup cannot fail. Keys sharing a tenant and an allow list share
    one ``routes`` frozenset and one ``models`` tuple. A rotated key's old secret is found too, as a ``Key``
    that expires when the overlap ends (the snapshot's own time: no recompile needed to cut it off); iterating
    and ``len`` count each key once, by its current hash.

    Task- and thread-safe: the columns never change; the memo of built keys only grows, and a race between two
    threads at worst builds the same (equal, immutable) ``Key`` twice.
    """

    __slots__ = ("_access", "_built", "_columns", "_tenants")

    def __init__(
        self, columns: KeyColumns, tenants: Mapping[str, Tenant],
        access: Mapping[tuple[str, tuple[str, ...]], Access],
    ) -> None:
        self._columns = columns
        self._tenants = tenants
        self._access = access
        self._built: dict[bytes, Key] = {}

    def get(self, digest: bytes, default: Key | None = None) -> Key | None:  # type: ignore[override]
        key = self._built.get(digest)
        if key is not None:
            return key
        c = self._columns
        i = c.index.get(digest)
        expires_at = 0
        if i is None:
            retired = c.retired.get(digest) if c.retired else None
            if retired is None:
                return default
            i, expires_at = retired  # the old secret of a rotated key: the same key, until the overlap ends
        own = c.expires_at[i]
        tenant = c.tenants[i]
        allowed, models = self._access[(tenant, c.routes[i])]
        key = Key(id=c.ids[i], hash=digest, tenant=self._tenants[tenant], project=c.projects[i],
                  expires_at=min(own, expires_at) if own and expires_at else own or expires_at,
                  routes=allowed, models=models)
        self._built[digest] = key
        return key

    def __getitem__(self, digest: bytes) -> Key:
        key = self.get(digest)
        if key is None:
            raise KeyError(digest)
        return key

    def __contains__(self, digest: object) -> bool:
        return digest in self._columns.index or digest in self._columns.retired

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._columns.index)

    def __len__(self) -> int:
        return len(self._columns.index)

    def __repr__(self) -> str:
        return f"<KeyTable of {len(self)} keys>"
