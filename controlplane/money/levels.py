"""Budget levels for the metrics: spend, limit and outstanding grants of every tenant and project budget.

Only tenant and project budgets: key and user budgets would make a metric series per key or user (unbounded label
cardinality); their spend is in the usage API. Read at scrape time from the ledger's documents of the current
month (two listings), with grants past their reclaim time counted as returned, as the ledger would.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.money.ledger import Ledger, ScopeState, reclaim
from controlplane.policy.compile import PolicySet, usd_micros
from controlplane.policy.resources import Budget
from controlplane.store.layout import BUDGETS, budget_key
from tollway.budget_scopes import period_of, project_scope, tenant_scope
from tollway.money import PICO_PER_MICRO


@dataclass(frozen=True, slots=True)
class BudgetLevel:
    tenant: str
    project: str  # "" for the tenant's own budget
    spent: int    # pico-dollars settled this month
    limit: int
    outstanding: int  # granted to data planes and not yet settled


def _pico(budget: Budget) -> int:
    return usd_micros(budget.monthly_usd) * PICO_PER_MICRO


async def budget_levels(ledger: Ledger, policy: PolicySet, now: float) -> list[BudgetLevel]:
    """Raises ``StoreError`` when the ledger cannot be read."""
    period = period_of(now)
    wanted: list[tuple[str, str, str, int]] = []
    for name in sorted(policy.tenants):
        spec = policy.tenants[name].spec
        if spec.budget is not None:
            wanted.append((name, "", tenant_scope(name), _pico(spec.budget)))
        wanted.extend((name, p.name, project_scope(name, p.name), _pico(p.budget))
                      for p in spec.projects if p.budget is not None)
    if not wanted:
        return []
    docs = {}
    for kind in ("tenant", "project"):
        docs.update({kv.key: kv.value for kv in (await ledger.store.list(f"{BUDGETS}spend/{period}/{kind}/")).items})
    out = []
    for tenant, project, scope, limit in wanted:
        state = ScopeState.from_json(docs.get(budget_key(period, scope)))
        reclaim(state, now, ledger.grace_s)
        out.append(BudgetLevel(tenant, project, state.spent, limit, state.outstanding()))
    return out
