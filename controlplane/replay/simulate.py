"""Replaying recorded requests through a policy: the data plane's own decision core, over recorded facts.

Pure (no I/O, no clock, no event loop): ``Replayer(snapshot, spent)`` builds what a data plane of that region
would build from the snapshot (``Runtime``, the rate limits' ``LimitTable`` in a ``RateLimiter``, a
``LimitsGate``), and ``decide(row, facts, pick)`` runs one recorded request through it, in timestamp order
(``Facts.of(row)``: what both policies' replays read of the row, made once):

- plan: ``dataplane.core.decide.decide_route`` over the recorded facts (key id, model, surface, needs, prompt
  estimate, ``max_tokens``): the function every data plane runs, so there is no second implementation of policy;
- admit: ``dataplane.core.limits.limits_gate.LimitsGate.admit`` itself, the data plane's admission: its token buckets
  (``RateLimiter`` at a lone data plane's share, 1.0: the fleet-wide limit) evolve along the recorded timestamps,
  then the budget reservation, here against ``ReplayBudget``: the fleet's spend per scope and month, from what was
  recorded before the window (``spent``) plus what the replay settled since, refusing a request whose worst case
  no longer fits;
- settle: ``LimitsGate.settle`` with the recorded tokens, at the serving deployment's prices (so a move to a
  cheaper deployment leaves more budget, and the token buckets are reconciled as the data plane did).

What the data plane knows of a request that its record does not carry is taken as recorded:

- health and latency: the candidates the recorded policy's plan puts before the deployment that served the
  request were passed over for it (failed, ejected, slower, or not drawn), and under another policy the request
  goes to the first candidate of its plan that is not one of those; so replaying the recorded policy reproduces
  the recorded deployment, failovers and latency ordering included;
- the worst case a reservation holds: the data plane bounds it from the body (its bytes, ``n``), the replay from
  the recorded prompt estimate (four bytes a token: the body's length) or the recorded prompt tokens, whichever
  is larger, and ``max_tokens`` (else the deployment's output limit), at the dearest candidate;
- weighted routes draw ``pick`` from the caller's seeded generator.

A request recorded as refused has no tokens: if another policy lets it through, its cost is unknown (counted 0).
Key lookups are by id (the record never holds a secret); a key the policy no longer has refuses as ``key_unknown``.

Not thread-safe: one replay owns a ``Replayer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from dataplane.core.accounting import Outcome, Usage, cost_pico
from dataplane.core.attribution import NOBODY, Attribution
from dataplane.core.cost_bound import requested_output_bound, token_cost_bound
from dataplane.core.decide import RoutePlan, decide_route, facts_request
from dataplane.core.gate import Refusal
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.core.limits.rate_table import LimitTable
from dataplane.core.limits.ratelimit import RateLimiter
from dataplane.core.validate import HubRequest, Surface
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Key, Runtime
from tollway.budget_scopes import BudgetIndex, BudgetScope, period_of
from tollway.pb import snapshot_pb2 as pb

_NONE: frozenset[str] = frozenset()
_SURFACES: frozenset[str] = frozenset({"chat", "embeddings", "completions", "moderations", "count_tokens"})
_NO_OUTPUT: frozenset[str] = frozenset({"embeddings", "moderations"})


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
    needs: str  # the capabilities it needed, comma-separated ("" for none)
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

    def usage(self) -> Usage:
        """The recorded tokens, as the data plane settled them."""
        return Usage(self.input_tokens, self.output_tokens, self.cached_input_tokens, "upstream",
                     self.cache_write_tokens, 0, self.reasoning_tokens)


class Decided(NamedTuple):
    """What a policy does with one request: the deployment that serves it, or the refusal's code."""

    deployment: str  # "" when refused
    provider: str
    refusal: str  # "" when served
    cost_pico: int  # at the serving deployment's prices, from the recorded tokens


KEY_UNKNOWN = Decided("", "", "key_unknown", 0)
KEY_EXPIRED = Decided("", "", "key_expired", 0)
_NO_USAGE = Usage()


class Facts:
    """What a replay reads of a recorded row, made once per row for both policies (``of``): the time, the
    request as ``decide_route`` reads it (``facts_request``), the attribution and the recorded tokens. Memoizes
    what repeats across rows (needs, attributions); one replay owns it."""

    __slots__ = ("_attributions", "_needs", "now", "request", "usage", "who")

    def __init__(self) -> None:
        self._needs: dict[str, frozenset[str]] = {"": _NONE}
        self._attributions: dict[tuple[str, str], Attribution] = {("", ""): NOBODY}
        self.now = 0.0
        self.request: HubRequest = facts_request("", "chat", _NONE, 0, None)
        self.who: Attribution = NOBODY
        self.usage: Usage = _NO_USAGE

    def of(self, row: Recorded) -> Facts:
        """This object, now holding ``row``'s facts (valid until the next call)."""
        needs = self._needs.get(row.needs)
        if needs is None:
            needs = self._needs[row.needs] = frozenset(row.needs.split(","))
        surface: Surface = row.surface if row.surface in _SURFACES else "chat"  # type: ignore[assignment]
        self.now = row.ts_ms / 1000
        self.request = facts_request(row.route, surface, needs, row.estimated_prompt_tokens, row.max_tokens,
                                     row.stream)
        who = self._attributions.get((row.user, row.project))
        if who is None:
            who = self._attributions[(row.user, row.project)] = Attribution(row.user, row.project)
        self.who = who
        self.usage = _NO_USAGE if row.refusal else row.usage()
        return self


Reservation = tuple[tuple[str, str], ...]


class ReplayBudget:
    """The fleet's budget spend per (scope, month), as the replay evolves it: the ``BudgetReserver`` the
    replay's ``LimitsGate`` calls, where a data plane's calls its ``BudgetBook``. A request is refused when its
    worst case exceeds what one of its scopes has left (the control plane's ledger rule: spent + grants <= limit,
    with the whole limit granted to the one replayed fleet), with the data plane's refusal code. Requests are
    replayed one at a time and settled at once, so nothing is ever reserved across requests."""

    def __init__(self, index: BudgetIndex, spent: Mapping[tuple[str, str], int]) -> None:
        self.index = index
        self.spent = dict(spent)
        self._scopes: dict[tuple[str, str, str, str], tuple[BudgetScope, ...]] = {}
        self._periods: dict[int, str] = {}  # UTC day -> its month (``period_of``)

    def scopes_for(self, tenant: str, project: str, key_id: str, user: str) -> tuple[BudgetScope, ...]:
        """``BudgetIndex.scopes_for``, memoized (a replay asks for the same few combinations millions of times)."""
        who = (tenant, project, key_id, user)
        scopes = self._scopes.get(who)
        if scopes is None:
            scopes = self._scopes[who] = self.index.scopes_for(tenant, project, key_id, user)
        return scopes

    def reserve(self, tenant: str, project: str, key_id: str, user: str, worst_case: int,
                now: float) -> Reservation | ApiError:
        scopes = self.scopes_for(tenant, project, key_id, user)
        if not scopes:
            return ()
        day = int(now // 86_400)
        period = self._periods.get(day)
        if period is None:
            period = self._periods[day] = period_of(now)
        held = []
        for s in scopes:
            left = s.limit.monthly_pico - self.spent.get((s.name, period), 0)
            if left < worst_case:
                return ApiError(429, f"the {s.kind} budget is exhausted", "insufficient_quota",
                                f"{s.kind}_budget_exceeded")
            held.append((s.name, period))
        return tuple(held)

    def settle(self, reservation: Reservation, actual_pico: int) -> None:
        for slot in reservation:
            self.spent[slot] = self.spent.get(slot, 0) + actual_pico

    def release(self, reservation: Reservation) -> None:
        return None


class Replayer:
    """One policy's replay state for one region: its runtime, its gate (buckets and budget spend)."""

    def __init__(self, snapshot: pb.Snapshot, spent: Mapping[tuple[str, str], int] | None = None) -> None:
        if not snapshot.version:  # no policy compiles for the region (``pb.Snapshot()``): no key is known there
            snapshot = pb.Snapshot(version="none")
        # No credentials: the replay sends nothing, and a missing credential must not drop a candidate.
        self.runtime = Runtime.from_snapshot(snapshot, environ={})
        self._hashes = {k.id: k.hash for k in snapshot.keys}
        self._keys: dict[str, Key | None] = {}
        self.budget = ReplayBudget(BudgetIndex.of(snapshot), spent or {})
        index = self.budget.index
        has_budgets = bool(index.keys) or any(t.budget is not None or t.projects or t.per_user is not None
                                              for t in index.tenants.values())
        self.gate = LimitsGate(RateLimiter(LimitTable.from_snapshot(snapshot)),
                               self.budget if has_budgets else None, self._worst_case)
        self._facts: Facts | None = None  # the row being admitted (``_worst_case`` reads it)

    def key(self, key_id: str) -> Key | None:
        """The policy's key of that id (its current secret's), or None."""
        if key_id in self._keys:
            return self._keys[key_id]
        digest = self._hashes.get(key_id)
        key = self._keys[key_id] = self.runtime.keys.get(digest) if digest is not None else None
        return key

    def decide(self, row: Recorded, facts: Facts, pick: float,
               failed: frozenset[str] | None = None) -> tuple[Decided, frozenset[str]]:
        """The decision for ``row`` (``facts``: ``Facts.of(row)``), and the deployments taken as failed for it.
        ``failed``: those the recorded request failed over from, as the recorded policy's replay found them;
        None for that replay itself, which finds them (the candidates its plan puts before the recorded
        deployment).

        Authenticate by key id, plan (``decide_route``), admit (``LimitsGate.admit``), settle
        (``LimitsGate.settle``)."""
        key = self.key(row.key_id)
        now = facts.now
        if key is None:
            return KEY_UNKNOWN, _NONE
        if key.expires_at and key.is_expired(now):
            return KEY_EXPIRED, _NONE
        plan = decide_route(self.runtime, key, facts.request, pick)
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
        self._facts = facts
        admission = self.gate.admit(plan, facts.who, now)
        if isinstance(admission, Refusal):
            error = admission.error
            return Decided("", "", error.code or error.type, 0), failed
        dep = candidates[0]
        if failed:
            dep = next((d for d in candidates if d.name not in failed), dep)
        usage = facts.usage
        cost = 0 if facts.request.surface == "count_tokens" else cost_pico(dep.prices, usage)  # counting is free
        if admission.ticket.states or admission.reservation:  # else nothing to reconcile: skip the Outcome
            self.gate.settle(Outcome("", "", plan, dep, 1, 200, usage, cost, now, None, 0.0, attribution=facts.who),
                             admission)
        return Decided(dep.name, dep.provider.name, "", cost), failed

    def _worst_case(self, plan: RoutePlan) -> int:
        """The reservation's bound from the recorded facts (see the module docstring), at the dearest candidate;
        0 for a request no budget applies to (nothing is reserved for it)."""
        facts = self._facts
        assert facts is not None
        who = facts.who
        if not self.budget.scopes_for(plan.key.tenant.name, who.project, plan.key.id, who.user):
            return 0
        request = plan.request
        prompt = max(4 * request.estimated_prompt_tokens, facts.usage.prompt_tokens)
        no_output = request.surface in _NO_OUTPUT
        return max(token_cost_bound(d, prompt, 0 if no_output else requested_output_bound(request.max_tokens, d))
                   for d in plan.candidates)
