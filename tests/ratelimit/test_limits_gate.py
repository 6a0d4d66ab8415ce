"""``LimitsGate``: rate limits then budget reservation at admission; reconciliation at settle and release.

The budget book here is a small in-memory one with the interface of ``dataplane.core.limits.budget.BudgetBook`` (a fake
that keeps real accounts, not a mock): it lets the composition be tested before and apart from the real one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from dataplane.core.accounting import Outcome, Usage
from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.core.gate import Admission, Refusal
from dataplane.core.limits.budget import BudgetBook
from dataplane.core.limits.limits_gate import LimitsGate, estimated_tokens, plan_worst_case
from dataplane.core.limits.ratelimit import RateLimiter
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Runtime
from tests.ratelimit.limits_snapshot import limited_snapshot, plan_for
from tollway.budget_scopes import BudgetIndex, period_of
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure


@dataclass
class Reservation:
    micros: int


@dataclass
class FakeBudgetBook:
    limit_micros: int
    reserved: int = 0
    spent: int = 0
    settled: list[int] = field(default_factory=list)

    calls: list[tuple[str, str, str, str]] = field(default_factory=list)

    def reserve(self, tenant: str, project: str, key_id: str, user: str, worst_case: int,
                now: float) -> Reservation | ApiError:
        self.calls.append((tenant, project, key_id, user))
        if self.spent + self.reserved + worst_case > self.limit_micros:
            return ApiError(429, "budget exhausted", "insufficient_quota", "tenant_budget_exceeded")
        self.reserved += worst_case
        return Reservation(worst_case)

    def settle(self, reservation: Reservation, actual_micros: int) -> None:
        self.reserved -= reservation.micros
        self.spent += actual_micros
        self.settled.append(actual_micros)

    def release(self, reservation: Reservation) -> None:
        self.reserved -= reservation.micros


WORST_CASE = 1_000


def gate_for(snap: pb.Snapshot, budget: FakeBudgetBook | None = None) -> LimitsGate:
    gate = LimitsGate(RateLimiter(), budget, lambda plan: WORST_CASE)
    assert gate.configure(snap) is None
    return gate


def outcome(plan: RoutePlan, status: int = 200, usage: Usage | None = None, cost: int = 0,
            at: float = 1_000.0) -> Outcome:
    return Outcome(request_id="r", snapshot="v", plan=plan, deployment=plan.candidates[0], attempts=1, status=status,
                   usage=usage, cost_pico=cost, started=at, first_byte_s=None, duration_s=0.0)


def test_admission_carries_openai_headers_of_the_tightest_scope() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=600, tokens_per_minute=100_000),
                                  key=pb.RateLimit(requests_per_minute=10))
    runtime = Runtime.from_snapshot(snap)
    gate = gate_for(snap)
    plan = plan_for(runtime, keys.acme_all, max_tokens=100)
    admission = gate.admit(plan, Attribution(project="web"), 1_000.0)
    assert isinstance(admission, Admission)
    tokens = estimated_tokens(plan)
    assert dict(admission.headers) == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": str(100_000 - tokens),
        "x-ratelimit-reset-tokens": f"{tokens * 60 // 100}ms",
    }
    assert admission.attribution == Attribution(project="web")


def test_refusal_has_retry_after_and_the_scope() -> None:
    snap, keys = limited_snapshot(per_user=pb.RateLimit(requests_per_minute=2))
    runtime = Runtime.from_snapshot(snap)
    gate = gate_for(snap)
    plan = plan_for(runtime, keys.acme_all)
    alice = Attribution(user="alice")
    assert isinstance(gate.admit(plan, alice, 1_000.0), Admission)
    assert isinstance(gate.admit(plan, alice, 1_000.0), Admission)
    refusal = gate.admit(plan, alice, 1_000.0)
    assert isinstance(refusal, Refusal)
    assert (refusal.error.status, refusal.error.code) == (429, "rate_limit_exceeded")
    assert refusal.error.message == ("user 'alice' of tenant 'acme' requests per minute limit (2) reached; "
                                     "try again in 30s")
    assert dict(refusal.headers) == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s", "retry-after": "30", "x-tollway-rate-limit-scope": "user",
    }
    assert isinstance(gate.admit(plan, Attribution(user="bob"), 1_000.0), Admission)


def test_budget_refusal_gives_the_rate_limit_back() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=2))
    runtime = Runtime.from_snapshot(snap)
    budget = FakeBudgetBook(limit_micros=WORST_CASE)
    gate = gate_for(snap, budget)
    plan = plan_for(runtime, keys.acme_all)
    first = gate.admit(plan, Attribution("alice", "web"), 1_000.0)
    assert isinstance(first, Admission) and first.reservation == Reservation(WORST_CASE)
    assert budget.calls == [("acme", "web", "acme-all", "alice")]
    for _ in range(5):  # refused by the budget, not by the 2 rpm: those refusals took no request
        refusal = gate.admit(plan, Attribution(), 1_000.0)
        assert isinstance(refusal, Refusal)
        assert refusal.error.code == "tenant_budget_exceeded" and not refusal.headers
    gate.settle(outcome(plan, usage=Usage(10, 5), cost=300), first)
    assert (budget.reserved, budget.spent) == (0, 300)
    assert isinstance(gate.admit(plan, Attribution(), 1_000.0), Refusal)  # 300 + 1000 > 1000
    budget.limit_micros = 10_000
    assert isinstance(gate.admit(plan, Attribution(), 1_000.0), Admission)  # the 2nd request of the minute
    refusal = gate.admit(plan, Attribution(), 1_000.0)
    assert isinstance(refusal, Refusal) and refusal.error.code == "rate_limit_exceeded"


@pytest.mark.parametrize(("status", "usage", "tokens_left"), [
    (200, Usage(prompt_tokens=60, completion_tokens=40), 900),  # 100 used: the rest of the estimate comes back
    (502, None, 1_000),  # the upstream failed: nothing used, everything refunded
    (200, None, 0),  # a stream that ended without usage keeps its estimate (more than the bucket)
])
def test_settle_reconciles_tokens(status: int, usage: Usage | None, tokens_left: int) -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(tokens_per_minute=1_000))
    runtime = Runtime.from_snapshot(snap)
    gate = gate_for(snap)
    big = plan_for(runtime, keys.acme_all, max_tokens=1_000)
    admission = gate.admit(big, Attribution(), 1_000.0)
    assert isinstance(admission, Admission)
    assert admission.headers["x-ratelimit-remaining-tokens"] == "0"
    gate.settle(outcome(big, status, usage), admission)
    small = plan_for(runtime, keys.acme_all, max_tokens=90)
    expected = tokens_left // estimated_tokens(small)
    assert sum(isinstance(gate.admit(small, Attribution(), 1_000.0), Admission) for _ in range(20)) == expected


def test_release_gives_back_rate_and_budget() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=1))
    runtime = Runtime.from_snapshot(snap)
    budget = FakeBudgetBook(limit_micros=WORST_CASE)
    gate = gate_for(snap, budget)
    plan = plan_for(runtime, keys.acme_all)
    admission = gate.admit(plan, Attribution(), 1_000.0)
    assert isinstance(admission, Admission)
    gate.release(admission, 1_000.0)
    assert budget.reserved == 0
    assert isinstance(gate.admit(plan, Attribution(), 1_000.0), Admission)


def test_a_new_snapshot_binds_from_the_next_request() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=100))
    runtime = Runtime.from_snapshot(snap)
    gate = gate_for(snap)
    plan = plan_for(runtime, keys.acme_all)
    assert sum(isinstance(gate.admit(plan, Attribution(), 1_000.0), Admission) for _ in range(10)) == 10
    tighter, _ = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=5), version="v-limits-2")
    assert gate.configure(tighter) is None
    # The bucket keeps its level, clamped to the new capacity: 5 more, then refused.
    assert sum(isinstance(gate.admit(plan, Attribution(), 1_000.0), Admission) for _ in range(10)) == 5
    unlimited, _ = limited_snapshot(version="v-limits-3")
    assert gate.configure(unlimited) is None
    admission = gate.admit(plan, Attribution(), 1_000.0)
    assert isinstance(admission, Admission) and not admission.headers


def test_a_negative_limit_is_refused_and_the_old_limits_stay() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=1))
    runtime = Runtime.from_snapshot(snap)
    gate = gate_for(snap)
    bad, _ = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=-5))
    assert gate.configure(bad) == "tenant 'acme': negative rate limit"
    plan = plan_for(runtime, keys.acme_all)
    assert isinstance(gate.admit(plan, Attribution(), 1_000.0), Admission)
    assert isinstance(gate.admit(plan, Attribution(), 1_000.0), Refusal)


def test_with_the_real_budget_book() -> None:
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=1))
    snap.tenants[0].budget.CopyFrom(pb.Budget(monthly_micros=1_000_000))
    book = BudgetBook()
    book.set_index(BudgetIndex.of(snap))
    gate = LimitsGate(RateLimiter(), book)
    assert gate.configure(snap) is None
    runtime = Runtime.from_snapshot(snap)
    plan = plan_for(runtime, keys.acme_all, max_tokens=100)
    now = time.time()
    pending = gate.admit(plan, Attribution(project="web"), now)
    assert isinstance(pending, Refusal) and pending.error.code == "budget_lease_pending"
    # The lease arrives: the refused request took no rate limit, so the next one passes both.
    book.apply("tenant/acme", period_of(now), limited=True, granted=500_000 * 10**6, remaining=500_000 * 10**6,
               expires_at=now + 60, answered_at=now)  # pico-dollars
    admission = gate.admit(plan, Attribution(project="web"), now)
    assert isinstance(admission, Admission)
    allowance = book.allowance("tenant/acme", period_of(now))
    assert allowance is not None and allowance.reserved == plan_worst_case(plan) > 0
    gate.settle(outcome(plan, usage=Usage(10, 5), cost=123, at=now), admission)
    assert (allowance.reserved, allowance.spent) == (0, 123)
