"""When an alert fires. Pure: no I/O, no asyncio; every function takes the facts and the clock.

Budget events fire once per scope and period: their id is derived from (kind, period, scope), so recording one
that exists already is a no-op, whoever evaluates it and however often. A budget is

- past its soft threshold when ``spent * 100 >= limit * softPercent`` (settled spend, fleet-wide);
- exhausted when its spend reached the limit, or a data plane refused a request as exhausted (the data plane's
  ``*_budget_exceeded``, which it answers only when no room is left anywhere: ``dataplane.core.limits.budget``).

A rate-limit scope is refusing while data planes keep reporting new refusals on it (cumulative counts per data
plane, ``RefusalWatch.report``) at most ``gap_s`` apart; one such episode fires once, when it has lasted
``threshold_s``, and its id carries its start, so a scope that calms down and starts refusing again fires again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from controlplane.policy.resources import AlertKind
from tollway.budget_scopes import BudgetLimit

SOFT: AlertKind = "budget.soft_threshold"
EXHAUSTED: AlertKind = "budget.exhausted"
REFUSING: AlertKind = "ratelimit.refusing"
FORGET_AFTER_S = 600.0  # a data plane's count for a scope it stopped reporting is dropped after this


def event_id(kind: AlertKind, *about: str) -> str:
    """A stable id (the webhook's idempotency key): the same event always gets the same id."""
    return "evt_" + hashlib.sha256("|".join((kind, *about)).encode()).hexdigest()[:24]


def budget_crossings(spent: int, limit: BudgetLimit, exceeded: bool) -> tuple[AlertKind, ...]:
    """The budget events that hold for a scope that has settled ``spent`` pico-dollars against ``limit``;
    ``exceeded``: a data plane refused a request as exhausted."""
    out: list[AlertKind] = []
    if spent > 0 and spent * 100 >= limit.monthly_pico * limit.soft_percent:
        out.append(SOFT)
    if exceeded or (spent > 0 and spent >= limit.monthly_pico):
        out.append(EXHAUSTED)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Refusing:
    """A rate-limit scope that has been refusing for at least the threshold."""

    scope: str
    since: float     # unix seconds of the first report of the episode
    lasted_s: float  # from the first to the latest report of new refusals
    refusals: int    # refusals counted in the episode so far

    @property
    def id(self) -> str:
        return event_id(REFUSING, self.scope, str(int(self.since * 1000)))


@dataclass(slots=True)
class _Episode:
    start: float
    last: float
    refusals: int = 0
    fired: bool = False


class RefusalWatch:
    """Refusal reports per (data plane, scope) and the refusing episodes they make. Not task-safe across threads;
    one event loop feeds it. Memory: one entry per (data plane, scope) reported within ``FORGET_AFTER_S``."""

    def __init__(self, threshold_s: float = 60.0, gap_s: float = 15.0) -> None:
        self.threshold_s = threshold_s
        self.gap_s = gap_s
        self._counts: dict[tuple[str, str], tuple[int, float]] = {}
        self._episodes: dict[str, _Episode] = {}

    def report(self, node: str, scope: str, count: int, now: float) -> None:
        """``count``: the data plane's cumulative refusals on ``scope`` (a smaller one: it counts afresh)."""
        last, _ = self._counts.get((node, scope), (0, now))
        self._counts[(node, scope)] = (count, now)
        new = count - last if count >= last else count
        if new <= 0:
            return
        ep = self._episodes.get(scope)
        if ep is None or now - ep.last > self.gap_s:
            ep = self._episodes[scope] = _Episode(now, now)
        ep.last = now
        ep.refusals += new

    def due(self, now: float) -> list[Refusing]:
        """Episodes that reached the threshold since the last call (each returned once); ended ones are dropped."""
        out: list[Refusing] = []
        for scope, ep in list(self._episodes.items()):
            if now - ep.last > self.gap_s:
                del self._episodes[scope]
                continue
            if not ep.fired and ep.last - ep.start >= self.threshold_s:
                ep.fired = True
                out.append(Refusing(scope, ep.start, ep.last - ep.start, ep.refusals))
        for key, (_, seen) in list(self._counts.items()):
            if now - seen > FORGET_AFTER_S:
                del self._counts[key]
        return out


def scope_owner(scope: str, key_tenants: dict[str, str]) -> tuple[str, str]:
    """(tenant, project) a budget or rate-limit scope belongs to (project "" when it is not a project's);
    a key's tenant comes from ``key_tenants`` (key id -> tenant), "" when unknown."""
    kind, _, rest = scope.partition("/")
    if kind == "key":
        return key_tenants.get(rest, ""), ""
    tenant, _, name = rest.partition("/")
    return tenant, name if kind == "project" else ""
