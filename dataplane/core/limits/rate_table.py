"""The rate limits a snapshot declares, for O(1) lookups on the request path: ``RateLimit`` (requests and tokens
per minute, fleet-wide), ``RateScope`` (what a bucket limits: a tenant, a user of a tenant, a route of a tenant, a
key) and ``LimitTable`` (every declared limit of a snapshot). Pure and immutable; ``dataplane.core.limits.ratelimit``
runs the buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

from dataplane.snapshot.runtime import InvalidSnapshot
from tollway.budget_scopes import key_scope, tenant_scope, user_scope
from tollway.pb import snapshot_pb2 as pb

RateScopeKind = Literal["tenant", "user", "route", "key"]


@dataclass(frozen=True)
class RateLimit:
    """A declared (fleet-wide) limit; 0 on a dimension means no limit on it."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0


class RateScope(NamedTuple):
    """What a bucket limits. A tuple, so it hashes fast as a dict key on the request path."""

    kind: RateScopeKind
    tenant: str  # "" for keys
    name: str  # the tenant, the user, the route or the key id

    @property
    def id(self) -> str:
        """The scope's name in ``demand`` and ``set_shares``: tenant/T, user/T/U, route/T/R or key/K, spelled
        as budget scopes are (``tollway.budget_scopes``: U percent-encoded)."""
        if self.kind == "tenant":
            return tenant_scope(self.name)
        if self.kind == "user":
            return user_scope(self.tenant, self.name)
        if self.kind == "route":
            return f"route/{self.tenant}/{self.name}"
        return key_scope(self.name)

    def describe(self) -> str:
        if self.kind == "tenant":
            return f"tenant {self.name!r}"
        if self.kind == "user":
            return f"user {self.name!r} of tenant {self.tenant!r}"
        if self.kind == "route":
            return f"model {self.name!r} of tenant {self.tenant!r}"
        return f"API key {self.name!r}"


def _limit(where: str, r: pb.RateLimit) -> RateLimit | None:
    if r.requests_per_minute < 0 or r.tokens_per_minute < 0:
        raise InvalidSnapshot(f"{where}: negative rate limit")
    if not r.requests_per_minute and not r.tokens_per_minute:
        return None
    return RateLimit(r.requests_per_minute, r.tokens_per_minute)


@dataclass(frozen=True)
class LimitTable:
    """Every declared limit of a snapshot, for O(1) lookups. Immutable; holds only scopes that have a limit."""

    tenants: Mapping[str, RateLimit] = field(default_factory=lambda: MappingProxyType({}))
    per_user: Mapping[str, RateLimit] = field(default_factory=lambda: MappingProxyType({}))  # tenant -> each user's
    per_route: Mapping[tuple[str, str], RateLimit] = field(default_factory=lambda: MappingProxyType({}))
    keys: Mapping[str, RateLimit] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_snapshot(cls, snap: pb.Snapshot) -> LimitTable:
        """Pure; raises ``InvalidSnapshot`` for a negative limit (the compiler never emits one)."""
        tenants: dict[str, RateLimit] = {}
        per_user: dict[str, RateLimit] = {}
        per_route: dict[tuple[str, str], RateLimit] = {}
        keys: dict[str, RateLimit] = {}
        for t in snap.tenants:
            where = f"tenant {t.name!r}"
            if t.HasField("rate_limit") and (lim := _limit(where, t.rate_limit)):
                tenants[t.name] = lim
            if t.HasField("per_user_rate_limit") and (lim := _limit(where, t.per_user_rate_limit)):
                per_user[t.name] = lim
            for r in t.per_route_rate_limits:
                if lim := _limit(f"{where}: route {r.route!r}", r.limit):
                    per_route[(t.name, r.route)] = lim
        for k in snap.keys:
            if k.HasField("rate_limit") and (lim := _limit(f"key {k.id!r}", k.rate_limit)):
                keys[k.id] = lim
        return cls(MappingProxyType(tenants), MappingProxyType(per_user), MappingProxyType(per_route),
                   MappingProxyType(keys))

    def limit(self, scope: RateScope) -> RateLimit | None:
        if scope.kind == "tenant":
            return self.tenants.get(scope.name)
        if scope.kind == "user":
            return self.per_user.get(scope.tenant)
        if scope.kind == "route":
            return self.per_route.get((scope.tenant, scope.name))
        return self.keys.get(scope.name)

    def applicable(self, tenant: str, user: str, route: str, key_id: str) -> list[tuple[RateScope, RateLimit]]:
        found: list[tuple[RateScope, RateLimit]] = []
        if (lim := self.tenants.get(tenant)) is not None:
            found.append((RateScope("tenant", tenant, tenant), lim))
        if user and (lim := self.per_user.get(tenant)) is not None:
            found.append((RateScope("user", tenant, user), lim))
        if (lim := self.per_route.get((tenant, route))) is not None:
            found.append((RateScope("route", tenant, route), lim))
        if (lim := self.keys.get(key_id)) is not None:
            found.append((RateScope("key", "", key_id), lim))
        return found
