"""Where each tenant's and project's budget stands this month: spend against limit, burn rate, projection. Pure.

Three sources meet here, each authoritative for one number:

- the limit comes from the published snapshots (``budget_limits``: the budgets data planes enforce now);
- ``spent`` (settled, fleet-wide) and ``held`` (grants outstanding at data planes) come from the ledger
  (``controlplane.money.ledger.ScopeState``), which is what enforcement counts;
- the burn rate comes from the usage events of the last 7 days (DuckDB): ``week_pico / 7`` per day.

The projection is ``spent + week_pico * seconds left in the month / (7 days)``: this month's settled spend plus
the last week's pace carried to the end of the month. All amounts are integer pico-dollars (``tollway.money``);
divisions floor, so a projection never claims more precision than the inputs hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from tollway.budget_scopes import BudgetLimit, next_period_start, project_scope, tenant_scope
from tollway.pb import snapshot_pb2 as pb

WEEK_S = 7 * 86_400
BudgetKind = Literal["tenant", "project"]


@dataclass(frozen=True, slots=True)
class ScopeBudget:
    """A tenant's or project's monthly budget, as a snapshot carries it."""

    kind: BudgetKind
    tenant: str
    project: str  # "" for a tenant
    limit: BudgetLimit

    @property
    def scope(self) -> str:
        return project_scope(self.tenant, self.project) if self.kind == "project" else tenant_scope(self.tenant)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One scope this month. Immutable; amounts in pico-dollars."""

    budget: ScopeBudget
    spent_pico: int
    held_pico: int
    week_pico: int
    projected_pico: int

    @property
    def limit_pico(self) -> int:
        return self.budget.limit.monthly_pico

    @property
    def burn_per_day_pico(self) -> int:
        return self.week_pico // 7

    @property
    def used_percent(self) -> float:
        """Spent as a percentage of the limit (a zero limit counts as fully used once anything is spent)."""
        return _percent(self.spent_pico, self.limit_pico)

    @property
    def projected_percent(self) -> float:
        return _percent(self.projected_pico, self.limit_pico)

    @property
    def will_exceed(self) -> bool:
        return self.projected_pico > self.limit_pico


def _percent(part: int, whole: int) -> float:
    if whole <= 0:
        return 100.0 if part > 0 else 0.0
    return 100 * part / whole


def budget_limits(snapshots: Iterable[pb.Snapshot]) -> list[ScopeBudget]:
    """Every tenant and project budget of the snapshots (a tenant served in several regions appears in each
    region's snapshot with the same budget: it is listed once), sorted by scope."""
    found: dict[str, ScopeBudget] = {}
    for snap in snapshots:
        for t in snap.tenants:
            if t.HasField("budget"):
                b = ScopeBudget("tenant", t.name, "", BudgetLimit.of(t.budget))
                found.setdefault(b.scope, b)
            for p in t.project_policies:
                if p.HasField("budget"):
                    b = ScopeBudget("project", t.name, p.name, BudgetLimit.of(p.budget))
                    found.setdefault(b.scope, b)
    return [found[s] for s in sorted(found)]


def projected(spent: int, week: int, now: float) -> int:
    """``spent`` plus the last week's pace (``week`` over 7 days) for the rest of the month of ``now``."""
    left_s = max(0, int(next_period_start(now) - now))
    return spent + week * left_s // WEEK_S


def budget_statuses(budgets: Iterable[ScopeBudget], ledger: Mapping[str, tuple[int, int]],
                    week: Mapping[str, int], now: float) -> list[BudgetStatus]:
    """Each budget's status, the most at risk first (highest projected share of its limit, then scope).

    ``ledger``: scope -> (spent, held) this month; ``week``: scope -> spend over the 7 days up to ``now`` (unix s).
    A scope missing from either has spent nothing there."""
    out = []
    for b in budgets:
        spent, held = ledger.get(b.scope, (0, 0))
        w = week.get(b.scope, 0)
        out.append(BudgetStatus(b, spent, held, w, projected(spent, w, now)))
    out.sort(key=lambda s: (-s.projected_percent, -s.spent_pico, s.budget.scope))
    return out
