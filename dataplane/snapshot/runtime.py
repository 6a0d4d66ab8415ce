"""The runtime form of a snapshot: frozen objects and dicts, built once, read by every request in O(1).

``Runtime.from_snapshot`` validates the snapshot whole (unique names, every reference resolves, key hashes are
32 bytes, routes are well formed) and raises ``InvalidSnapshot`` naming the first problem; nothing is partially
built. Upstream credentials are resolved from the environment here, once per build, and never logged.

Everything here is immutable after construction and therefore task-safe; a new snapshot means a new Runtime.
The one memo, ``KeyTable`` (keys by hash), builds each ``Key`` on first lookup from columns validated up front:
a snapshot of 100,000 keys installs in a fraction of a second, and no lookup can fail validation late.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar

from dataplane.errors import DataPlaneError
from tollway.pb import snapshot_pb2 as pb

PROVIDER_TYPES = frozenset({"openai", "azure", "anthropic", "bedrock", "gemini", "vertex", "mock"})
STRATEGIES = frozenset({"cheapest", "priority", "weighted", "latency"})
FAILOVER_ON = frozenset({"connect", "timeout", "5xx", "429"})
CAPABILITIES = frozenset({"tools", "vision", "json_mode"})
SURFACES = frozenset({"chat", "responses", "embeddings", "completions", "moderations", "count_tokens"})
ROUTE_KINDS = frozenset({"chat", "embeddings"})
_URL_RE = re.compile(r"^https?://[^\s/]+")
ContentMode = Literal["none", "hashed", "redacted", "full"]
CONTENT_MODES: frozenset[str] = frozenset({"none", "hashed", "redacted", "full"})
_T = TypeVar("_T")
_U = TypeVar("_U")


class InvalidSnapshot(DataPlaneError):
    """The snapshot is inconsistent; the message names the object and field at fault."""


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """The runtime form of a ``LoggingPolicy``: what the log keeps, and whether to redact before the provider."""

    mode: ContentMode = "none"
    redact_before_provider: bool = False

    @classmethod
    def from_fields(cls, content: str, redact_before_provider: bool) -> ContentPolicy:
        """From the snapshot's fields; an unknown or empty mode keeps nothing (fail closed)."""
        mode: ContentMode = content if content in CONTENT_MODES else "none"  # type: ignore[assignment]
        return cls(mode, redact_before_provider)


NO_CONTENT = ContentPolicy()


@dataclass(frozen=True, slots=True)
class Prices:
    """Micro-dollars per million tokens = pico-dollars per token, per token kind (``tollway.money``)."""

    input: int
    output: int
    cached_input: int
    cache_write: int = -1      # -1: as ``input`` (``Prices.of`` resolves it)
    cache_write_1h: int = -1   # -1: as ``cache_write``
    reasoning_output: int = -1  # -1: as ``output``

    def __post_init__(self) -> None:
        # Older snapshots have no price for these kinds: they were billed as input and output.
        if self.cache_write < 0:
            object.__setattr__(self, "cache_write", self.input)
        if self.cache_write_1h < 0:
            object.__setattr__(self, "cache_write_1h", self.cache_write)
        if self.reasoning_output < 0:
            object.__setattr__(self, "reasoning_output", self.output)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    type: str
    base_url: str
    region: str
    connect_timeout_s: float
    read_timeout_s: float
    api_version: str
    mock_delay_ms: int
    mock_tokens_per_second: int
    # Resolved from the environment at build time; None when no credential is configured or the variable is
    # missing. repr=False keeps it out of any accidental log line or traceback.
    credential: str | None = field(repr=False)
    credential_env: str = ""
    aws_region: str = ""
    aws_profile: str = ""
    gcp_project: str = ""
    gcp_location: str = ""


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    provider: Provider
    upstream_model: str
    capabilities: frozenset[str]
    context_window: int
    max_output_tokens: int
    prices: Prices
    surfaces: frozenset[str] = frozenset({"chat"})  # what it serves (``SURFACES``)
    embedding_family: str = ""  # deployments of one family produce comparable vectors
    embedding_dimensions: int = 0


@dataclass(frozen=True, slots=True)
class Failover:
    attempts: int
    attempt_timeout_s: float
    total_timeout_s: float
    on: frozenset[str]


@dataclass(frozen=True, slots=True)
class Candidate:
    deployment: Deployment
    weight: int


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    strategy: str
    failover: Failover
    candidates: tuple[Candidate, ...]
    kind: str = "chat"  # chat | embeddings


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    projects: frozenset[str]
    regions: frozenset[str]
    routes: frozenset[str]  # empty: every route
    content: ContentPolicy = NO_CONTENT  # what the request log keeps; whether to redact before the provider


@dataclass(frozen=True, slots=True)
class Key:
    """A client key as the data plane knows it: its hash and what it may reach."""

    id: str
    hash: bytes = field(repr=False)
    tenant: Tenant
    project: str
    expires_at: int
    # Route names this key may use (key ∩ tenant allow lists), whether or not they are servable here.
    routes: frozenset[str]
    # What GET /v1/models shows: allowed routes with at least one candidate in the tenant's regions, sorted.
    models: tuple[str, ...]

    def is_expired(self, now: float) -> bool:
        return self.expires_at != 0 and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Runtime:
    version: str
    region: str
    keys: Mapping[bytes, Key]
    tenants: Mapping[str, Tenant]
    routes: Mapping[str, Route]
    # (tenant name, route name) -> the route's candidates whose provider region the tenant allows, declared order.
    tenant_candidates: Mapping[tuple[str, str], tuple[Candidate, ...]]

    @classmethod
    def from_snapshot(cls, snap: pb.Snapshot, environ: Mapping[str, str] | None = None) -> Runtime:
        """Validate ``snap`` whole and build its runtime form. Raises ``InvalidSnapshot``."""
        return _build(snap, os.environ if environ is None else environ)

    def candidates_for(self, tenant: str, route: str) -> tuple[Candidate, ...]:
        return self.tenant_candidates.get((tenant, route), ())


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InvalidSnapshot(f"{kind} with an empty name")
        if name in seen:
            raise InvalidSnapshot(f"{kind} {name!r} appears twice")
        seen.add(name)


def _provider(p: pb.Provider, environ: Mapping[str, str]) -> Provider:
    where = f"provider {p.name!r}"
    if p.type not in PROVIDER_TYPES:
        raise InvalidSnapshot(f"{where}: unknown type {p.type!r}")
    if p.type != "mock" and not _URL_RE.match(p.base_url):
        raise InvalidSnapshot(f"{where}: base_url must be an http(s) URL")
    if not p.region:
        raise InvalidSnapshot(f"{where}: empty region")
    if p.connect_timeout_s < 0 or p.read_timeout_s < 0:
        raise InvalidSnapshot(f"{where}: negative timeout")
    if p.mock.delay_ms < 0 or p.mock.tokens_per_second < 0:
        raise InvalidSnapshot(f"{where}: negative mock option")
    return Provider(
        name=p.name, type=p.type, base_url=p.base_url.rstrip("/"), region=p.region,
        connect_timeout_s=p.connect_timeout_s or 5.0, read_timeout_s=p.read_timeout_s or 120.0,
        api_version=p.api_version, mock_delay_ms=p.mock.delay_ms, mock_tokens_per_second=p.mock.tokens_per_second,
        credential=environ.get(p.credential_env) if p.credential_env else None, credential_env=p.credential_env,
        aws_region=p.aws_region, aws_profile=p.aws_profile, gcp_project=p.gcp_project, gcp_location=p.gcp_location,
    )


def _deployment(d: pb.Deployment, providers: Mapping[str, Provider]) -> Deployment:
    where = f"deployment {d.name!r}"
    provider = providers.get(d.provider)
    if provider is None:
        raise InvalidSnapshot(f"{where}: provider {d.provider!r} does not exist")
    if not d.upstream_model:
        raise InvalidSnapshot(f"{where}: empty upstream_model")
    unknown = set(d.capabilities) - CAPABILITIES
    if unknown:
        raise InvalidSnapshot(f"{where}: unknown capabilities {sorted(unknown)}")
    pr = d.prices
    if min(pr.input, pr.output, pr.cached_input, pr.cache_write, pr.cache_write_1h, pr.reasoning_output) < 0:
        raise InvalidSnapshot(f"{where}: negative price")
    if d.context_window < 0 or d.max_output_tokens < 0:
        raise InvalidSnapshot(f"{where}: negative token limit")
    surfaces = frozenset(d.surfaces) or frozenset({"chat"})
    if surfaces - SURFACES:
        raise InvalidSnapshot(f"{where}: unknown surfaces {sorted(surfaces - SURFACES)}")
    if "embeddings" in surfaces and (not d.embedding.family or d.embedding.dimensions <= 0):
        raise InvalidSnapshot(f"{where}: serves embeddings without an embedding family and dimensions")
    return Deployment(
        name=d.name, provider=provider, upstream_model=d.upstream_model, capabilities=frozenset(d.capabilities),
        context_window=d.context_window, max_output_tokens=d.max_output_tokens,
        prices=Prices(input=pr.input, output=pr.output, cached_input=pr.cached_input,
                      cache_write=pr.cache_write if pr.HasField("cache_write") else -1,
                      cache_write_1h=pr.cache_write_1h if pr.HasField("cache_write_1h") else -1,
                      reasoning_output=pr.reasoning_output if pr.HasField("reasoning_output") else -1),
        surfaces=surfaces, embedding_family=d.embedding.family, embedding_dimensions=d.embedding.dimensions,
    )


def _route(r: pb.Route, deployments: Mapping[str, Deployment]) -> Route:
    where = f"route {r.name!r}"
    if r.strategy not in STRATEGIES:
        raise InvalidSnapshot(f"{where}: unknown strategy {r.strategy!r}")
    if not r.deployments:
        raise InvalidSnapshot(f"{where}: no deployments")
    if len(set(r.deployments)) != len(r.deployments):
        raise InvalidSnapshot(f"{where}: a deployment is listed twice")
    if r.weights and len(r.weights) != len(r.deployments):
        raise InvalidSnapshot(f"{where}: {len(r.weights)} weights for {len(r.deployments)} deployments")
    if any(w < 0 for w in r.weights):
        raise InvalidSnapshot(f"{where}: negative weight")
    if r.strategy == "weighted" and not r.weights:
        raise InvalidSnapshot(f"{where}: weighted strategy without weights")
    kind = r.kind or "chat"
    if kind not in ROUTE_KINDS:
        raise InvalidSnapshot(f"{where}: unknown kind {r.kind!r}")
    f = r.failover
    unknown = set(f.on) - FAILOVER_ON
    if unknown:
        raise InvalidSnapshot(f"{where}: unknown failover conditions {sorted(unknown)}")
    if f.attempts < 0 or f.attempt_timeout_s < 0 or f.total_timeout_s < 0:
        raise InvalidSnapshot(f"{where}: negative failover setting")
    candidates = []
    for i, name in enumerate(r.deployments):
        dep = deployments.get(name)
        if dep is None:
            raise InvalidSnapshot(f"{where}: deployments[{i}]: deployment {name!r} does not exist")
        candidates.append(Candidate(dep, r.weights[i] if r.weights else 1))
    if kind == "embeddings" and len({c.deployment.embedding_family for c in candidates}) != 1:
        raise InvalidSnapshot(f"{where}: an embeddings route must hold deployments of one embedding family")
    return Route(
        name=r.name, strategy=r.strategy, candidates=tuple(candidates), kind=kind,
        failover=Failover(
            attempts=f.attempts or 1, attempt_timeout_s=f.attempt_timeout_s or 60.0,
            total_timeout_s=f.total_timeout_s or 120.0, on=frozenset(f.on),
        ),
    )


def _build(snap: pb.Snapshot, environ: Mapping[str, str]) -> Runtime:
    if not snap.version:
        raise InvalidSnapshot("snapshot has no version")
    _unique("tenant", [t.name for t in snap.tenants])
    columns = _KeyColumns.of(snap)
    _unique("provider", [p.name for p in snap.providers])
    _unique("deployment", [d.name for d in snap.deployments])
    _unique("route", [r.name for r in snap.routes])

    providers = {p.name: _provider(p, environ) for p in snap.providers}
    deployments = {d.name: _deployment(d, providers) for d in snap.deployments}
    routes = {r.name: _route(r, deployments) for r in snap.routes}

    tenants: dict[str, Tenant] = {}
    for t in snap.tenants:
        if not t.regions:
            raise InvalidSnapshot(f"tenant {t.name!r}: no regions")
        # Allow lists may name routes this region's snapshot does not carry (no deployment here): they stay
        # allowed but unservable, so a request for one is refused, never forwarded elsewhere.
        tenants[t.name] = Tenant(t.name, frozenset(t.projects), frozenset(t.regions), frozenset(t.routes),
                                 ContentPolicy.from_fields(t.logging.content, t.logging.redact_before_provider))

    tenant_candidates: dict[tuple[str, str], tuple[Candidate, ...]] = {}
    for tenant in tenants.values():
        for route in routes.values():
            if tenant.routes and route.name not in tenant.routes:
                continue
            allowed = tuple(c for c in route.candidates if c.deployment.provider.region in tenant.regions)
            if allowed:
                tenant_candidates[(tenant.name, route.name)] = allowed

    if not columns.are_valid(tenants):
        _explain_invalid_keys(snap, tenants)  # raises the first problem in snapshot order
    access = {
        combo: _access(tenants[combo[0]], combo[1], routes, tenant_candidates)
        for combo in _distinct_pairs(columns.tenants, columns.routes)
    }
    return Runtime(
        version=snap.version, region=snap.region, keys=KeyTable(columns, tenants, access),
        tenants=MappingProxyType(tenants), routes=MappingProxyType(routes),
        tenant_candidates=MappingProxyType(tenant_candidates),
    )


# What a (tenant, key allow list) pair may reach: (route names, models shown by GET /v1/models).
_Access = tuple[frozenset[str], tuple[str, ...]]


# Bulk operations over a snapshot's keys go this many at a time: each step is one C call holding the GIL (about a
# millisecond), and between steps a thread building a runtime lets the event loop have it (``SnapshotHolder``).
_STEP = 4096


def _distinct(items: list[_T]) -> set[_T]:
    """``set(items)``, built ``_STEP`` at a time."""
    out: set[_T] = set()
    for i in range(0, len(items), _STEP):
        out.update(items[i:i + _STEP])
    return out


def _distinct_pairs(a: list[_T], b: list[_U]) -> set[tuple[_T, _U]]:
    """``set(zip(a, b))`` (equal lengths), built ``_STEP`` at a time."""
    out: set[tuple[_T, _U]] = set()
    for i in range(0, len(a), _STEP):
        out.update(zip(a[i:i + _STEP], b[i:i + _STEP], strict=True))
    return out


@dataclass(frozen=True, slots=True)
class _KeyColumns:
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
    def of(cls, snap: pb.Snapshot) -> _KeyColumns:
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
            _unique("key", ids)
        return cls(index=index, hashes=hashes, ids=ids, tenants=tenants, projects=projects,
                   expires_at=expires_at, routes=routes,
                   retired=_retired(snap, ids, index) if snap.retired_secrets else {})

    def are_valid(self, tenants: Mapping[str, Tenant]) -> bool:
        """The rules of ``_explain_invalid_keys``, checked in bulk with set operations (no error detail)."""
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


def _explain_invalid_keys(snap: pb.Snapshot, tenants: Mapping[str, Tenant]) -> None:
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


def _access(
    tenant: Tenant, key_routes: tuple[str, ...], routes: Mapping[str, Route],
    tenant_candidates: Mapping[tuple[str, str], tuple[Candidate, ...]],
) -> _Access:
    allowed = set(key_routes) if key_routes else set(tenant.routes) if tenant.routes else set(routes)
    if tenant.routes:
        allowed &= tenant.routes
    models = tuple(sorted(r for r in allowed if (tenant.name, r) in tenant_candidates))
    return frozenset(allowed), models


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
        self, columns: _KeyColumns, tenants: Mapping[str, Tenant],
        access: Mapping[tuple[str, tuple[str, ...]], _Access],
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
