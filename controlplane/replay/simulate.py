"""Replaying recorded requests through a policy: the data plane's own decision core, over recorded facts.

Pure (no I/O, no clock, no event loop): ``Replayer(snapshot, spent)`` builds what a data plane of that region
would build from the snapshot (``Runtime``, the rate limits' ``LimitTable``, the budgets' ``BudgetIndex``), and
``decide(row, pick)`` runs one recorded request through it, in timestamp order:

- plan: ``dataplane.core.decide.decide_route`` over the recorded facts (key id, model, surface, needs, prompt
  estimate, ``max_tokens``): the function every data plane runs, so there is no second implementation of policy;
- admit: as ``dataplane.core.limits_gate.LimitsGate.admit`` does, with the data plane's own ``RateLimiter``:
  fleet-wide token buckets (a lone data plane's share, 1.0) that evolve along the recorded timestamps, then the
  budget reservation, here against ``ReplayBudget``: the fleet's spend per scope and month, from what was
  recorded before the window (``spent``) plus what the replay settled since, refusing a request whose worst case
  no longer fits;
- settle: the rate limiter is reconciled with the recorded tokens and the budget charged the cost of those tokens
  at the serving deployment's prices (so a move to a cheaper deployment leaves more budget).

Health and latency are taken as recorded: the candidates the recorded policy's plan puts before the deployment
that served the request were passed over for it (failed, ejected, slower, or not drawn), and under another
policy the request goes to the first candidate of its plan that is not one of those; so replaying the recorded
policy reproduces the recorded deployment, failovers and latency ordering included.
Weighted routes draw ``pick`` from the caller's seeded generator. A request recorded as refused has no tokens:
if another policy lets it through, its cost is unknown (counted 0).

Not thread-safe: one replay owns a ``Replayer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from dataplane.core.accounting import Usage, cost_pico
from dataplane.core.cost_bound import requested_output_bound, token_cost_bound
from dataplane.core.decide import decide_route, facts_request
from dataplane.core.limits_gate import estimated_tokens
from dataplane.core.ratelimit import LimitTable, RateLimited, RateLimiter
from dataplane.core.validate import Surface
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Deployment, Key, Runtime
from tollway.budget_scopes import BudgetIndex, period_of
from tollway.pb import snapshot_pb2 as pb

_NONE: frozenset[str] = frozenset()
_SURFACES: frozenset[str] = frozenset({"chat", "embeddings", "completions", "moderations", "count_tokens"})


class Recorded(NamedTuple):
    """One recorded request (a usage event, or a refusal: ``refusal`` set), as ``controlplane.replay.traffic``
    reads it, in this column order."""

    ts_ms: int
    region: str
    tenant: str
    project: str
    user: str
    key_id: str
    route: str
    surface: str
    needs: str  # the capabilities it needed, sorted, comma-separated ("" for none)
    estimated_prompt_tokens: int
    max_tokens: int | None
    stream: bool
    deployment: str  # "" when no upstream served it
    refusal: str  # the refusal's code, "" when it was let through
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_pico: int


class Decided(NamedTuple):
    """What a policy does with one request: the deployment that serves it, or the refusal's code."""

    deployment: str  # "" when refused
    provider: str
    refusal: str  # "" when served
    cost_pico: int  # at the serving deployment's prices, from the recorded tokens


class ReplayBudget:
    """The fleet's budget spend per (scope, month), as the replay evolves it: a ``BudgetReserver`` as the data
    plane's ``LimitsGate`` calls one. A request is refused when its worst case exceeds what its scope has left
    (the control plane's ledger rule: spent + grants <= limit, with the whole limit granted to the one replayed
    fleet). Requests are replayed one at a time, so nothing is ever reserved across requests."""

    def __init__(self, index: BudgetIndex, spent: Mapping[tuple[str, str], int]) -> None:
        self.index = index
        self.spent = dict(spent)

    def reserve(self, tenant: str, project: str, key_id: str, user: str, worst_case: int,
                now: float) -> tuple[tuple[str, str], ...] | ApiError:
        scopes = self.index.scopes_for(tenant, project, key_id, user)
        if not scopes:
            return ()
        period = period_of(now)
        held = []
        for s in scopes:
            left = s.limit.monthly_pico - self.spent.get((s.name, period), 0)
            if left < worst_case:
                return ApiError(429, f"the {s.kind} budget is exhausted", "insufficient_quota",
                                f"{s.kind}_budget_exceeded")
            held.append((s.name, period))
        return tuple(held)

    def settle(self, reservation: tuple[tuple[str, str], ...], actual_pico: int) -> None:
        for slot in reservation:
            self.spent[slot] = self.spent.get(slot, 0) + actual_pico

    def release(self, reservation: tuple[tuple[str, str], ...]) -> None:
        return None


class Replayer:
    """One policy's replay state for one region: its runtime, its buckets and its budget spend."""

    def __init__(self, snapshot: pb.Snapshot, spent: Mapping[tuple[str, str], int] | None = None) -> None:
        # No credentials: the replay sends nothing, and a missing credential must not drop a candidate.
        self.runtime = Runtime.from_snapshot(snapshot, environ={})
        self.keys: dict[str, Key] = {}
        for digest in self.runtime.keys:
            key = self.runtime.keys[digest]
            self.keys[key.id] = key
        self.limiter = RateLimiter(LimitTable.from_snapshot(snapshot))
        self.budget = ReplayBudget(BudgetIndex.of(snapshot), spent or {})
        self._needs: dict[str, frozenset[str]] = {"": _NONE}

    def decide(self, row: Recorded, pick: float,
               failed: frozenset[str] | None = None) -> tuple[Decided, frozenset[str]]:
        """The decision for ``row``, and the deployments taken as failed for it. ``failed``: those the recorded
        request failed over from, as the recorded policy's replay found them; None for that replay itself,
        which finds them (the candidates its plan puts before the recorded deployment).

        plan (``decide_route``), then admit as ``LimitsGate.admit`` does (the rate limiter's buckets, then the
        budget, giving back what the limiter took if the budget refuses), then settle."""
        key = self.keys.get(row.key_id)
        now = row.ts_ms / 1000
        if key is None:
            return Decided("", "", "key_unknown", 0), _NONE
        if key.expires_at and key.is_expired(now):
            return Decided("", "", "key_expired", 0), _NONE
        needs = self._needs.get(row.needs)
        if needs is None:
            needs = self._needs[row.needs] = frozenset(row.needs.split(","))
        surface: Surface = row.surface if row.surface in _SURFACES else "chat"  # type: ignore[assignment]
        request = facts_request(row.route, surface, needs, row.estimated_prompt_tokens, row.max_tokens, row.stream)
        plan = decide_route(self.runtime, key, request, pick)
        if isinstance(plan, ApiError):
            return Decided("", "", plan.code or plan.type, 0), _NONE
        candidates = plan.candidates
        if failed is None:
            failed = _NONE
            if candidates[0].name != row.deployment:
                for i, d in enumerate(candidates):
                    if d.name == row.deployment:
                        failed = frozenset(c.name for c in candidates[:i])
                        break
        checked = self.limiter.check(key.tenant.name, row.user, plan.route.name, key.id, estimated_tokens(plan),
                                     now)
        if isinstance(checked, RateLimited):
            return Decided("", "", "rate_limit_exceeded", 0), failed
        held: tuple[tuple[str, str], ...] = ()
        if surface != "count_tokens" and self.budget.index.scopes_for(key.tenant.name, row.project, key.id, row.user):
            reserved = self.budget.reserve(key.tenant.name, row.project, key.id, row.user,
                                           _worst_case(row, candidates), now)
            if isinstance(reserved, ApiError):
                self.limiter.release(checked, now)
                return Decided("", "", reserved.code or reserved.type, 0), failed
            held = reserved
        dep = candidates[0]
        if failed:
            dep = next((d for d in candidates if d.name not in failed), dep)
        cost = cost_pico(dep.prices, Usage(row.input_tokens, row.output_tokens, row.cached_input_tokens, "upstream",
                                           row.cache_write_tokens, 0, row.reasoning_tokens))
        self.limiter.record(checked, row.input_tokens + row.output_tokens, now)
        if held:
            self.budget.settle(held, cost)
        return Decided(dep.name, dep.provider.name, "", cost), failed


def _worst_case(row: Recorded, candidates: tuple[Deployment, ...]) -> int:
    """The reservation's bound from the recorded facts: the body length (4 bytes per estimated token, which
    bounds the text's tokens) and ``max_tokens``, at the dearest candidate."""
    prompt = max(4 * row.estimated_prompt_tokens, row.input_tokens)
    no_output = row.surface in ("embeddings", "moderations")
    return max(token_cost_bound(d, prompt, 0 if no_output else requested_output_bound(row.max_tokens, d))
               for d in candidates)
