"""Compile policy resources into per-region snapshots: a pure function, no I/O.

``check_references`` finds every dangling reference (returned as values, each naming the object and field);
``compile_policy`` turns a consistent ``PolicySet`` into one immutable ``Snapshot`` per region, whose version
is the sha256 of its deterministic serialization, so the same policy always yields the same version.

Residency: a region's snapshot holds the tenants that allow that region, and only the deployments whose
provider region is allowed by at least one of those tenants. Data planes further filter candidates per tenant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from controlplane.policy.resources import (
    DEFAULT_BASE_URLS,
    KINDS,
    ApiKey,
    Budget,
    Kind,
    Model,
    Provider,
    ProviderSpec,
    RateLimit,
    Route,
    Tenant,
)
from tollway.pb import snapshot_pb2 as pb
from tollway.protowire import LEN, VARINT, delimited, tag, varint

AnyResource = Tenant | ApiKey | Provider | Model | Route


@dataclass(frozen=True)
class PolicySet:
    """All resources, by kind and name. Immutable by convention: build a new one to change it."""

    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    keys: Mapping[str, ApiKey] = field(default_factory=dict)
    providers: Mapping[str, Provider] = field(default_factory=dict)
    models: Mapping[str, Model] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Iterable[AnyResource]) -> PolicySet:
        groups: dict[Kind, dict[str, AnyResource]] = {kind: {} for kind in KINDS}
        for r in resources:
            groups[r.kind][r.name] = r
        return cls.from_groups(groups)

    @classmethod
    def from_groups(cls, groups: Mapping[Kind, Mapping[str, AnyResource]]) -> PolicySet:
        """From resources grouped by kind and name (``by_kind``'s shape): the one place kinds map to fields."""
        return cls(
            tenants=groups["Tenant"],  # type: ignore[arg-type]
            keys=groups["ApiKey"],  # type: ignore[arg-type]
            providers=groups["Provider"],  # type: ignore[arg-type]
            models=groups["Model"],  # type: ignore[arg-type]
            routes=groups["Route"],  # type: ignore[arg-type]
        )

    def by_kind(self) -> dict[Kind, Mapping[str, AnyResource]]:
        """The resources grouped by kind, then name (the inverse of ``from_groups``)."""
        return {"Tenant": self.tenants, "ApiKey": self.keys, "Provider": self.providers, "Model": self.models,
                "Route": self.routes}

    def all(self) -> list[AnyResource]:
        out: list[AnyResource] = []
        for group in (self.tenants, self.keys, self.providers, self.models, self.routes):
            out.extend(group[name] for name in sorted(group))
        return out

    def get(self, kind: Kind, name: str) -> AnyResource | None:
        return self.by_kind()[kind].get(name)

    def regions(self) -> list[str]:
        found = {p.spec.region for p in self.providers.values()}
        for t in self.tenants.values():
            found.update(t.spec.regions)
        return sorted(found)


@dataclass(frozen=True)
class ReferenceError_:
    """A reference that does not resolve: ``kind/name`` at ``field`` points at something missing."""

    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.field}: {self.message}"


def _kind_problem(kind: str, name: str, model: Model) -> str:
    serves = set(model.spec.serves)
    if kind == "embeddings" and "embeddings" not in serves:
        return f"model {name!r} does not serve embeddings (serves: {', '.join(model.spec.serves)})"
    if kind == "chat" and serves == {"embeddings"}:
        return f"model {name!r} serves only embeddings: it belongs in a route of kind embeddings"
    return ""


def check_references(policy: PolicySet) -> list[ReferenceError_]:
    """Every reference between resources must resolve. Returns the problems, empty when consistent."""
    errors: list[ReferenceError_] = []

    def need(kind: str, name: str, fld: str, group: Mapping[str, object], target_kind: str, target: str) -> None:
        if target not in group:
            errors.append(ReferenceError_(kind, name, fld, f"{target_kind} {target!r} does not exist"))

    for t in policy.tenants.values():
        for i, route in enumerate(t.spec.routes):
            need("Tenant", t.name, f"spec.routes[{i}]", policy.routes, "Route", route)
        for i, limit in enumerate(t.spec.rate_limits.per_model if t.spec.rate_limits else []):
            need("Tenant", t.name, f"spec.rateLimits.perModel[{i}].route", policy.routes, "Route", limit.route)
    # Once per tenant rather than once per key: a policy may hold 100,000 keys over 1,000 tenants.
    projects = {t.name: {p.name for p in t.spec.projects} for t in policy.tenants.values()}
    for k in policy.keys.values():
        spec = k.spec
        tenant = policy.tenants.get(spec.tenant)
        if tenant is None:
            need("ApiKey", k.name, "spec.tenant", policy.tenants, "Tenant", spec.tenant)
        elif spec.project is not None and spec.project not in projects[spec.tenant]:
            errors.append(ReferenceError_(
                "ApiKey", k.name, "spec.project",
                f"project {spec.project!r} is not a project of tenant {spec.tenant!r}"))
        for i, route in enumerate(spec.routes) if spec.routes else ():  # most keys have no allow list
            need("ApiKey", k.name, f"spec.routes[{i}]", policy.routes, "Route", route)
            if tenant is not None and tenant.spec.routes and route not in tenant.spec.routes:
                errors.append(ReferenceError_(
                    "ApiKey", k.name, f"spec.routes[{i}]",
                    f"route {route!r} is not allowed for tenant {spec.tenant!r}"))
    for m in policy.models.values():
        need("Model", m.name, "spec.provider", policy.providers, "Provider", m.spec.provider)
        owner = policy.providers.get(m.spec.provider)
        mismatch = profile_problem(m, owner) if owner is not None else ""
        if mismatch:
            errors.append(ReferenceError_("Model", m.name, "spec.upstreamModel", mismatch))
    for r in policy.routes.values():
        families: set[str] = set()
        for i, model in enumerate(r.spec.models):
            need("Route", r.name, f"spec.models[{i}]", policy.models, "Model", model)
            found = policy.models.get(model)
            if found is None:
                continue
            problem = _kind_problem(r.spec.kind, model, found)
            if problem:
                errors.append(ReferenceError_("Route", r.name, f"spec.models[{i}]", problem))
            elif found.spec.embedding is not None and r.spec.kind == "embeddings":
                families.add(found.spec.embedding.family)
        if len(families) > 1:
            errors.append(ReferenceError_(
                "Route", r.name, "spec.models",
                f"an embeddings route holds one family (vectors of different models are not comparable); "
                f"found {', '.join(sorted(families))}"))
    return errors


class KeyEncodings:
    """A memo of each ApiKey's wire encoding as one ``Snapshot.keys`` entry, so that recompiling a policy of
    100,000 keys after one change encodes one key, and the snapshot's keys are filled by one parse.

    Protobuf concatenates repeated fields on the wire: the bytes ``tag, length, ApiKey`` appended for every key
    parse into exactly the message that adding them one by one builds. An entry is used only for the very
    resource object it was made from (resources are immutable, so identity implies content); a changed key is a
    new object and is encoded afresh. Compiling stays a pure function of the policy; the memo only saves work.

    Owned by one publisher. Safe to share between the event loop and one compiling thread: entries are added or
    replaced whole (atomic dict operations), and two threads racing on one key compute the same bytes.
    """

    def __init__(self) -> None:
        # name -> (the resource, its tenant, its entry): one tuple, so a reader never pairs parts of two versions
        self._by_name: dict[str, tuple[ApiKey, str, bytes]] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def entry(self, key: ApiKey) -> bytes:
        cached = self._by_name.get(key.name)
        if cached is None or cached[0] is not key:
            cached = self._by_name[key.name] = (key, key.spec.tenant, _key_entry(key))
        return cached[2]

    def entries(self, keys: Mapping[str, ApiKey], tenants: Collection[str]) -> bytes:
        """The ``Snapshot.keys`` entries, in name order, of the keys whose tenant is in ``tenants``."""
        by_name, out = self._by_name, []
        for name in sorted(keys):  # names alone: sorting (name, resource) pairs costs ten times more
            k = keys[name]
            cached = by_name.get(name)
            if cached is None or cached[0] is not k:
                cached = by_name[name] = (k, k.spec.tenant, _key_entry(k))
            if cached[1] in tenants:
                out.append(cached[2])
        return b"".join(out)

    def retain(self, names: Collection[str]) -> None:
        """Forget the keys not in ``names`` (deleted ones), so the memo does not grow without bound."""
        self._by_name = {n: e for n, e in self._by_name.items() if n in names}


def _key_entry(k: ApiKey) -> bytes:
    """``k`` as one ``Snapshot.keys`` entry on the wire: tag, length, then the ``ApiKey`` message.

    The scalar fields are encoded by hand because this is the one loop over 100,000 items (a third cheaper than
    building a message and serializing it); the rare nested ones by protobuf. Exactness is not at stake: the
    compiler parses these bytes into the snapshot, and its version hashes the message re-serialized
    deterministically, so any valid encoding of the same field values gives the same snapshot (a test compares
    this with the message built by protobuf).
    """
    s = k.spec
    if s.revoked_at is not None:
        return b""  # a revoked key travels nowhere: every data plane refuses it from its next snapshot on
    parts = [
        delimited(_ID, k.name.encode()),
        delimited(_HASH, bytes.fromhex(s.hash.removeprefix("sha256:"))),
        delimited(_TENANT, s.tenant.encode()),
    ]
    if s.project:
        parts.append(delimited(_PROJECT, s.project.encode()))
    if s.routes:
        parts.extend(delimited(_ROUTES, r.encode()) for r in sorted(s.routes))
    if s.hint:
        parts.append(delimited(_HINT, s.hint.encode()))
    if s.expires_at:
        parts.append(_EXPIRES_AT + varint(s.expires_at))
    budget, rate_limit = budget_pb(s.budget), rate_limit_pb(s.rate_limits)
    if budget is not None:
        parts.append(delimited(_BUDGET, budget.SerializeToString(deterministic=True)))
    if rate_limit is not None:
        parts.append(delimited(_RATE_LIMIT, rate_limit.SerializeToString(deterministic=True)))
    entry = delimited(_SNAPSHOT_KEYS, b"".join(parts))
    if not s.previous_secrets:
        return entry
    # Repeated fields of different numbers may interleave on the wire; parsing sorts them into their lists.
    retired = (pb.RetiredSecret(key_id=k.name, hash=bytes.fromhex(p.hash.removeprefix("sha256:")),
                                expires_at=p.expires_at) for p in s.previous_secrets)
    return entry + b"".join(delimited(_SNAPSHOT_RETIRED, r.SerializeToString(deterministic=True)) for r in retired)


def usd_micros(usd: Decimal) -> int:
    return int(usd * 1_000_000)


def budget_pb(budget: Budget | None) -> pb.Budget | None:
    if budget is None:
        return None
    return pb.Budget(monthly_micros=usd_micros(budget.monthly_usd), soft_percent=budget.soft_percent,
                     safe_allowance_micros=usd_micros(budget.safe_allowance_usd),
                     lease_seconds=budget.lease_seconds or 0)


def rate_limit_pb(limit: RateLimit | None) -> pb.RateLimit | None:
    if limit is None or (limit.requests_per_minute is None and limit.tokens_per_minute is None):
        return None
    return pb.RateLimit(requests_per_minute=limit.requests_per_minute or 0,
                        tokens_per_minute=limit.tokens_per_minute or 0)


def tenant_pb(t: Tenant) -> pb.Tenant:
    s = t.spec
    limits = s.rate_limits
    return pb.Tenant(
        name=t.name, projects=[p.name for p in s.projects], regions=sorted(s.regions), routes=sorted(s.routes),
        budget=budget_pb(s.budget), per_user_budget=budget_pb(s.per_user_budget),
        rate_limit=rate_limit_pb(limits),
        per_user_rate_limit=rate_limit_pb(limits.per_user if limits else None),
        per_route_rate_limits=[
            pb.RouteRateLimit(route=m.route, limit=rate_limit_pb(m))
            for m in sorted(limits.per_model if limits else [], key=lambda m: m.route)
        ],
        project_policies=[pb.ProjectPolicy(name=p.name, budget=budget_pb(p.budget))
                          for p in s.projects if p.budget is not None],
        logging=pb.LoggingPolicy(content=s.logging.content, redact_before_provider=s.logging.redact_before_provider,
                                 retention_days=s.logging.retention_days),
    )


_SNAPSHOT_KEYS = tag(pb.Snapshot.KEYS_FIELD_NUMBER, LEN)
_SNAPSHOT_RETIRED = tag(pb.Snapshot.RETIRED_SECRETS_FIELD_NUMBER, LEN)
_ID, _HASH, _TENANT, _PROJECT, _ROUTES, _HINT, _BUDGET, _RATE_LIMIT = (tag(n, LEN) for n in (
    pb.ApiKey.ID_FIELD_NUMBER, pb.ApiKey.HASH_FIELD_NUMBER, pb.ApiKey.TENANT_FIELD_NUMBER,
    pb.ApiKey.PROJECT_FIELD_NUMBER, pb.ApiKey.ROUTES_FIELD_NUMBER, pb.ApiKey.HINT_FIELD_NUMBER,
    pb.ApiKey.BUDGET_FIELD_NUMBER, pb.ApiKey.RATE_LIMIT_FIELD_NUMBER))
_EXPIRES_AT = tag(pb.ApiKey.EXPIRES_AT_FIELD_NUMBER, VARINT)


def price_micros(per_million_usd: Decimal | None) -> int:
    """USD per million tokens → integer micro-dollars per million tokens."""
    return 0 if per_million_usd is None else int(per_million_usd * 1_000_000)


def build_snapshots(policy: PolicySet, regions: Iterable[str] = (),
                    keys: KeyEncodings | None = None) -> dict[str, pb.Snapshot] | list[ReferenceError_]:
    """The one way the servers call the compiler: check references, then compile one snapshot per region the
    policy mentions plus ``regions``. Problems come back as values, never as exceptions: the list of references
    that do not resolve, or of values the snapshot cannot hold (protobuf's range checks raise ``ValueError``,
    the compiler's only failure)."""
    problems = check_references(policy)
    if problems:
        return problems
    keys = KeyEncodings() if keys is None else keys
    try:
        return {region: compile_region(policy, region, keys) for region in sorted(set(policy.regions()) | set(regions))}
    except ValueError as exc:
        return [ReferenceError_("", "", "", f"policy does not compile: {exc}")]


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return value if value is not None else default


def provider_base_url(s: ProviderSpec) -> str:
    """The provider's endpoint: ``baseUrl``, or its type's default (``DEFAULT_BASE_URLS``)."""
    if s.base_url:
        return s.base_url.rstrip("/")
    if s.type == "vertex" and s.gcp_location == "global":
        return "https://aiplatform.googleapis.com"  # the global endpoint has no location prefix
    default = DEFAULT_BASE_URLS.get(s.type, "")
    return default.format(aws_region=s.aws_region, gcp_location=s.gcp_location)


# A Bedrock cross-region inference profile (``eu.anthropic.…``) routes within its geography; ``global.`` anywhere.
INFERENCE_PROFILE_PREFIXES = ("eu", "us", "apac", "global", "ca", "jp", "au", "us-gov")


def profile_problem(model: Model, provider: Provider) -> str:
    """Why a Bedrock model id's geography prefix does not fit its provider's residency region, or ""."""
    if provider.spec.type != "bedrock":
        return ""
    prefix = model.spec.upstream_model.split(".", 1)[0]
    if prefix not in INFERENCE_PROFILE_PREFIXES:
        return ""
    region = provider.spec.region.lower()
    if prefix == "global":
        return ("a global inference profile may process data in any AWS region: it only fits a provider whose "
                "region is 'global'") if region != "global" else ""
    if region == prefix or region.startswith(prefix + "-") or region.startswith(prefix):
        return ""
    return (f"the inference profile {prefix!r} processes data in {prefix} regions, but provider "
            f"{provider.name!r} declares region {provider.spec.region!r}")


def compile_policy(policy: PolicySet, keys: KeyEncodings | None = None) -> dict[str, pb.Snapshot]:
    """One snapshot per region. The policy must be consistent (``check_references`` empty)."""
    keys = KeyEncodings() if keys is None else keys
    return {region: compile_region(policy, region, keys) for region in policy.regions()}


def compile_region(policy: PolicySet, region: str, keys: KeyEncodings | None = None) -> pb.Snapshot:
    """The snapshot of ``region``; ``keys`` is a memo that a caller compiling repeatedly passes each time."""
    snap = pb.Snapshot(region=region)
    tenants = [policy.tenants[n] for n in sorted(policy.tenants) if region in policy.tenants[n].spec.regions]
    allowed_regions = {r for t in tenants for r in t.spec.regions}
    providers = [p for n, p in sorted(policy.providers.items()) if p.spec.region in allowed_regions]
    provider_names = {p.name for p in providers}
    models = [m for n, m in sorted(policy.models.items()) if m.spec.provider in provider_names]
    model_names = {m.name for m in models}

    for t in tenants:
        snap.tenants.append(tenant_pb(t))
    tenant_names = {t.name for t in tenants}
    snap.MergeFromString((KeyEncodings() if keys is None else keys).entries(policy.keys, tenant_names))
    for p in providers:
        s = p.spec
        snap.providers.add(
            name=p.name, type=s.type, base_url=provider_base_url(s), region=s.region,
            aws_region=s.aws_region, aws_profile=s.aws_profile, gcp_project=s.gcp_project,
            gcp_location=s.gcp_location,
            credential_env=s.credential.env if s.credential else "",
            connect_timeout_s=s.timeouts.connect_seconds, read_timeout_s=s.timeouts.read_seconds,
            mock=pb.MockOptions(delay_ms=s.mock.delay_ms, tokens_per_second=s.mock.tokens_per_second),
            api_version=s.api_version,
        )
    for m in models:
        ms = m.spec
        snap.deployments.add(
            name=m.name, provider=ms.provider, upstream_model=ms.upstream_model,
            capabilities=sorted(ms.capabilities), context_window=ms.context_window,
            max_output_tokens=ms.max_output_tokens, surfaces=sorted(ms.serves),
            embedding=(pb.Embedding(family=ms.embedding.family, dimensions=ms.embedding.dimensions)
                       if ms.embedding is not None else None),
            prices=pb.Prices(
                input=price_micros(ms.pricing.input_per_million),
                output=price_micros(ms.pricing.output_per_million),
                cached_input=price_micros(_or(ms.pricing.cached_input_per_million, ms.pricing.input_per_million)),
                cache_write=price_micros(_or(ms.pricing.cache_write_per_million, ms.pricing.input_per_million)),
                cache_write_1h=price_micros(_or(ms.pricing.cache_write_1h_per_million,
                                                _or(ms.pricing.cache_write_per_million, ms.pricing.input_per_million))),
                reasoning_output=price_micros(_or(ms.pricing.reasoning_output_per_million,
                                                  ms.pricing.output_per_million)),
            ),
        )
    for name in sorted(policy.routes):
        r = policy.routes[name]
        candidates = [(m, w) for m, w in zip(r.spec.models, r.spec.weights or [0] * len(r.spec.models), strict=True)
                      if m in model_names]
        if not candidates:
            continue
        f = r.spec.failover
        snap.routes.add(
            name=r.name, kind=r.spec.kind, deployments=[m for m, _ in candidates], strategy=r.spec.strategy,
            weights=[w for _, w in candidates] if r.spec.weights else [],
            failover=pb.Failover(attempts=f.attempts, attempt_timeout_s=f.attempt_timeout_seconds,
                                 total_timeout_s=f.total_timeout_seconds, on=list(f.on)),
        )
    snap.version = snapshot_version(snap)
    return snap


def snapshot_version(snap: pb.Snapshot) -> str:
    """sha256 of the deterministic serialization with ``version`` cleared (first 16 hex characters)."""
    if snap.version:
        copy = pb.Snapshot()
        copy.CopyFrom(snap)
        copy.version = ""
        snap = copy
    return hashlib.sha256(snap.SerializeToString(deterministic=True)).hexdigest()[:16]
