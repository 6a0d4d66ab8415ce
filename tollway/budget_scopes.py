"""Budget scopes and periods, shared by the control plane's ledger and the data plane's budget book.

Pure. A scope is a string naming whose money it is:

    tenant/{tenant}   project/{tenant}/{project}   key/{key id}   user/{tenant}/{user, percent-encoded}

and a period is a calendar month in UTC, ``YYYY-MM``. ``BudgetIndex.of(snapshot)`` lists, once per snapshot,
which scopes carry a budget and what it is; ``scopes_for`` names the scopes one request is charged to.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import quote

from tollway.money import pico_of_micros
from tollway.pb import snapshot_pb2 as pb

BudgetScopeKind = Literal["tenant", "project", "key", "user"]
MAX_USER_LEN = 256  # longer user names are cut: a scope string must stay a reasonable store key


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    """A monthly budget in integer pico-dollars (``tollway.money``; declared in micro-dollars, so exact)."""

    monthly_pico: int
    soft_percent: int
    safe_allowance_pico: int
    lease_s: float = 0.0  # how long a grant lasts (0: the control plane's lease ttl)

    @classmethod
    def of(cls, b: pb.Budget) -> BudgetLimit:
        return cls(pico_of_micros(b.monthly_micros), b.soft_percent or 100, pico_of_micros(b.safe_allowance_micros),
                   float(b.lease_seconds))


@dataclass(unsafe_hash=True)
class BudgetScope:
    kind: Final[BudgetScopeKind]
    name: Final[str]  # the scope string
    limit: Final[BudgetLimit]

    def __init__(self, kind: BudgetScopeKind, name: str, limit: BudgetLimit) -> None:
        self.kind = kind
        self.name = name
        self.limit = limit


# The month ``period_of`` computed last: (its first second, the next month's, ``YYYY-MM``). Every request of a
# month asks for the same one; the tuple is replaced whole, so a reader on another thread sees one month.
_month: tuple[float, float, str] = (0.0, 0.0, "")


def period_of(unix_s: float) -> str:
    """The calendar month (UTC) of a unix time, ``YYYY-MM``."""
    global _month
    start, end, name = _month
    if start <= unix_s < end:
        return name
    t = time.gmtime(unix_s)
    name = f"{t.tm_year:04d}-{t.tm_mon:02d}"
    if unix_s >= 0:
        _month = (float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))), next_period_start(unix_s), name)
    return name


def next_period_start(unix_s: float) -> float:
    """Unix time at which the month after ``period_of(unix_s)`` begins."""
    t = time.gmtime(unix_s)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def tenant_scope(tenant: str) -> str:
    return f"tenant/{tenant}"


def project_scope(tenant: str, project: str) -> str:
    return f"project/{tenant}/{project}"


def key_scope(key_id: str) -> str:
    return f"key/{key_id}"


def user_scope(tenant: str, user: str) -> str:
    return f"user/{tenant}/{quote(user[:MAX_USER_LEN], safe='')}"


@dataclass(frozen=True, slots=True)
class TenantLimits:
    budget: BudgetLimit | None
    per_user: BudgetLimit | None
    projects: Mapping[str, BudgetLimit]


@dataclass(frozen=True, slots=True)
class BudgetIndex:
    """Which scopes of a snapshot carry a budget. Immutable; build once per snapshot with ``of``."""

    version: str
    tenants: Mapping[str, TenantLimits]
    keys: Mapping[str, BudgetLimit]  # key id -> budget, only keys that have one

    @classmethod
    def of(cls, snap: pb.Snapshot) -> BudgetIndex:
        tenants = {
            t.name: TenantLimits(
                BudgetLimit.of(t.budget) if t.HasField("budget") else None,
                BudgetLimit.of(t.per_user_budget) if t.HasField("per_user_budget") else None,
                MappingProxyType({p.name: BudgetLimit.of(p.budget)
                                  for p in t.project_policies if p.HasField("budget")}),
            )
            for t in snap.tenants
        }
        keys = {k.id: BudgetLimit.of(k.budget) for k in snap.keys if k.HasField("budget")}
        return cls(snap.version, MappingProxyType(tenants), MappingProxyType(keys))

    def scopes_for(self, tenant: str, project: str, key_id: str, user: str) -> tuple[BudgetScope, ...]:
        """The budget scopes a request of (tenant, project, key, user) is charged to; "" means absent."""
        out: list[BudgetScope] = []
        t = self.tenants.get(tenant)
        if t is not None:
            if t.budget is not None:
                out.append(BudgetScope("tenant", tenant_scope(tenant), t.budget))
            if project and project in t.projects:
                out.append(BudgetScope("project", project_scope(tenant, project), t.projects[project]))
        key_limit = self.keys.get(key_id)
        if key_limit is not None:
            out.append(BudgetScope("key", key_scope(key_id), key_limit))
        if t is not None and t.per_user is not None and user:
            out.append(BudgetScope("user", user_scope(tenant, user), t.per_user))
        return tuple(out)

    def limit_of(self, scope: str) -> BudgetLimit | None:
        """The budget of a scope string, or None when the scope carries none (or is unknown)."""
        kind, _, rest = scope.partition("/")
        if kind == "key":
            return self.keys.get(rest)
        tenant, _, name = rest.partition("/")
        t = self.tenants.get(tenant)
        if t is None:
            return None
        if kind == "tenant" and not name:
            return t.budget
        if kind == "project":
            return t.projects.get(name)
        if kind == "user" and name:
            return t.per_user
        return None

    def scope_named(self, scope: str) -> BudgetScope | None:
        """The budget scope of a scope string (as ``limit_of``), or None."""
        limit = self.limit_of(scope)
        if limit is None:
            return None
        kind = scope.partition("/")[0]
        if kind not in ("tenant", "project", "key", "user"):
            return None
        return BudgetScope(kind, scope, limit)  # type: ignore[arg-type]

    def static_scopes(self) -> tuple[BudgetScope, ...]:
        """Tenant and project scopes: few, known in advance, so a data plane may lease them before any request."""
        out: list[BudgetScope] = []
        for name, t in self.tenants.items():
            if t.budget is not None:
                out.append(BudgetScope("tenant", tenant_scope(name), t.budget))
            out.extend(BudgetScope("project", project_scope(name, p), lim) for p, lim in t.projects.items())
        return tuple(out)
