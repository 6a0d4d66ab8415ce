"""The composed gate: rate limits, then the budget reservation; settle reconciles both with what happened.

``LimitsGate.admit(plan, attribution, now)`` runs the rate limiter (``ratelimit``) for the request's
scopes and, when that admits, reserves the request's worst-case cost from the budget book (if there is one). It
answers an ``Admission`` (the ``x-ratelimit-*`` headers for the response, and what to settle later) or a
``Refusal`` (the OpenAI error, plus ``Retry-After`` and ``x-ratelimit-*`` when a rate limit refused). A budget
refusal gives back what the rate limiter took, so a refused request costs no quota.

Every admitted request must end in exactly one ``settle`` (it reached an upstream, or tried to) or ``release``
(it never did): otherwise its reservation stays charged until its lease expires.

Estimated tokens (what the tokens buckets take at admission) are the prompt estimate plus ``max_tokens`` or,
when the client gave none, ``DEFAULT_EXPECTED_OUTPUT_TOKENS``; ``settle`` reconciles with the upstream's actual
prompt + completion tokens (a failed attempt used none; a stream that ended without usage keeps the estimate).
The budget, not the rate limit, is where a true upper bound matters: it reserves ``worst_case(plan)``, by
default ``dataplane.core.cost_bound``'s bound over the plan's candidates, for the key's tenant and the attributed
project and user.

Snapshots: ``prepare(snapshot)`` builds an immutable ``LimitTable`` (any thread); its adopter, which the
``SnapshotHolder`` calls on the event loop in the same step as the runtime swap, publishes it by one reference
assignment, and the next ``admit`` applies it, so a policy change binds from the next request on. Everything but
``prepare`` runs on the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from dataplane.core.accounting import Outcome
from dataplane.core.attribution import Attribution
from dataplane.core.cost_bound import worst_case_pico
from dataplane.core.decide import DEFAULT_EXPECTED_OUTPUT_TOKENS, RoutePlan
from dataplane.core.gate import Admission, Refusal
from dataplane.core.limits.rate_table import LimitTable
from dataplane.core.limits.ratelimit import Quota, RateLimited, RateLimiter
from dataplane.core.limits.reset_text import format_reset
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import InvalidSnapshot
from tollway.pb import snapshot_pb2 as pb


class BudgetReserver(Protocol):
    """The money half (``budget.BudgetBook``): hold the worst case before forwarding, settle the cost."""

    def reserve(self, tenant: str, project: str, key_id: str, user: str, worst_case: int, now: float) -> Any:
        """A reservation, or the ``ApiError`` refusing the request."""
        ...

    def settle(self, reservation: Any, actual_pico: int) -> None: ...

    def release(self, reservation: Any) -> None: ...


def plan_worst_case(plan: RoutePlan) -> int:
    """The request's cost bound over every deployment it may be served by (``dataplane.core.cost_bound``)."""
    return worst_case_pico(plan.request.payload, plan.candidates, plan.request.surface)




def estimated_tokens(plan: RoutePlan) -> int:
    request = plan.request
    if request.surface == "count_tokens":
        return 0  # counting is rate-limited by requests; it consumes no tokens
    if request.surface in ("embeddings", "moderations"):
        return request.estimated_prompt_tokens
    return request.estimated_prompt_tokens + (request.max_tokens or DEFAULT_EXPECTED_OUTPUT_TOKENS)


def ratelimit_headers(requests: Quota | None, tokens: Quota | None) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the dimensions that have a limit (none when nothing is limited).

    ``limit`` is the declared (fleet-wide) limit; ``remaining`` and ``reset`` are this data plane's bucket at its
    share of that limit, i.e. what this data plane will still admit and when it is full again.
    """
    headers: dict[str, str] = {}
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests.limit)
        headers["x-ratelimit-remaining-requests"] = str(requests.remaining)
        headers["x-ratelimit-reset-requests"] = format_reset(requests.reset_s)
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens.limit)
        headers["x-ratelimit-remaining-tokens"] = str(tokens.remaining)
        headers["x-ratelimit-reset-tokens"] = format_reset(tokens.reset_s)
    return headers


def refusal_of(limited: RateLimited) -> Refusal:
    quota = limited.quota
    headers = ratelimit_headers(quota if limited.dimension == "requests" else None,
                                quota if limited.dimension == "tokens" else None)
    headers["retry-after"] = str(max(1, math.ceil(limited.retry_after_s)))
    headers["x-tollway-rate-limit-scope"] = limited.scope.kind
    return Refusal(limited.error(), headers)


class LimitsGate:
    """Rate limits and budget reservations in front of every upstream attempt. Owned by one event loop."""

    def __init__(self, limiter: RateLimiter | None = None, budget: BudgetReserver | None = None,
                 worst_case: Callable[[RoutePlan], int] = plan_worst_case) -> None:
        self.limiter = limiter or RateLimiter()  # the lease client calls its demand() and set_shares()
        self._budget = budget
        self._worst_case = worst_case
        self._latest: LimitTable = self.limiter.table

    def configure(self, snapshot: pb.Snapshot) -> str | None:
        """Publish the limits of ``snapshot`` (on the loop); None, or why they were refused (old ones stay)."""
        try:
            self.prepare(snapshot)()
        except InvalidSnapshot as exc:
            return str(exc)
        return None

    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        """Validate the limits of ``snapshot`` (``InvalidSnapshot``) and return how to adopt them: the
        ``SnapshotHolder`` adopts them together with the runtime, or not at all."""
        table = LimitTable.from_snapshot(snapshot)

        def adopt() -> None:
            self._latest = table

        return adopt

    def admit(self, plan: RoutePlan, attribution: Attribution, now: float) -> Admission | Refusal:
        latest = self._latest
        if latest is not self.limiter.table:
            self.limiter.configure(latest, now)
        key = plan.key
        checked = self.limiter.check(key.tenant.name, attribution.user, plan.route.name, key.id,
                                     estimated_tokens(plan), now)
        if isinstance(checked, RateLimited):
            return refusal_of(checked)
        reservation = None
        if self._budget is not None and plan.request.surface != "count_tokens":  # counting is free
            reservation = self._budget.reserve(key.tenant.name, attribution.project, key.id, attribution.user,
                                               self._worst_case(plan), now)
            if isinstance(reservation, ApiError):
                self.limiter.release(checked, now)
                return Refusal(reservation, {})
        return Admission(attribution, ratelimit_headers(checked.requests_quota, checked.tokens_quota), checked,
                         reservation)

    def settle(self, outcome: Outcome, admission: Admission) -> None:
        """Reconcile an admitted request that reached (or tried to reach) an upstream. Never blocks."""
        now = outcome.started + outcome.duration_s
        usage = outcome.usage
        if usage is not None:
            self.limiter.record(admission.ticket, usage.prompt_tokens + usage.completion_tokens, now)
        elif outcome.status >= 400:
            self.limiter.record(admission.ticket, 0, now)  # the upstream refused or failed: no tokens used
        if self._budget is not None and admission.reservation is not None:
            self._budget.settle(admission.reservation, outcome.cost_pico)

    def release(self, admission: Admission, now: float) -> None:
        """Give back everything an admitted request took that never reached an upstream."""
        self.limiter.release(admission.ticket, now)
        if self._budget is not None and admission.reservation is not None:
            self._budget.release(admission.reservation)
