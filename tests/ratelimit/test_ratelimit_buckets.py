"""Token buckets of ``dataplane.core.limits.ratelimit``: refill, burst, all-or-nothing, reconciliation, headers, policy
changes and fleet shares, over a simulated clock (no event loop)."""

from __future__ import annotations

import math

import pytest

from dataplane.core.limits.rate_table import LimitTable, RateLimit
from dataplane.core.limits.ratelimit import RateLimited, RateLimiter, Ticket
from dataplane.core.limits.reset_text import format_reset
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def table(tenant: RateLimit | None = None, user: RateLimit | None = None, route: RateLimit | None = None,
          key: RateLimit | None = None) -> LimitTable:
    return LimitTable(
        tenants={"acme": tenant} if tenant else {}, per_user={"acme": user} if user else {},
        per_route={("acme", "chat"): route} if route else {}, keys={"k1": key} if key else {})


def check(limiter: RateLimiter, now: float, tokens: int = 0, user: str = "", key: str = "k1") -> Ticket | RateLimited:
    return limiter.check("acme", user, "chat", key, tokens, now)


def admitted(limiter: RateLimiter, now: float, n: int, tokens: int = 0, user: str = "") -> int:
    return sum(isinstance(check(limiter, now, tokens, user), Ticket) for _ in range(n))


def test_burst_is_one_minute_then_refills_at_the_rate() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60)))
    assert admitted(limiter, 0.0, 100) == 60
    refused = check(limiter, 0.0)
    assert isinstance(refused, RateLimited)
    assert refused.retry_after_s == pytest.approx(1.0)
    assert admitted(limiter, 0.5, 5) == 0
    assert admitted(limiter, 1.0, 5) == 1
    assert admitted(limiter, 11.0, 20) == 10  # 10 seconds of refill at 1/s
    assert admitted(limiter, 1_000.0, 100) == 60  # never more than the capacity, however long idle


def test_tokens_bucket_takes_the_estimate_and_reports_the_wait() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(tokens_per_minute=1_000)))
    assert isinstance(check(limiter, 0.0, tokens=400), Ticket)
    assert isinstance(check(limiter, 0.0, tokens=400), Ticket)
    refused = check(limiter, 0.0, tokens=400)
    assert isinstance(refused, RateLimited)
    assert refused.dimension == "tokens"
    assert refused.retry_after_s == pytest.approx(200 / (1_000 / 60))  # 200 missing at 16.7 tokens/s
    assert refused.quota.remaining == 200


def test_a_request_larger_than_the_bucket_passes_only_when_it_is_full_and_leaves_debt() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(tokens_per_minute=1_000)))
    assert isinstance(check(limiter, 0.0, tokens=5_000), Ticket)
    refused = check(limiter, 0.0, tokens=1)
    assert isinstance(refused, RateLimited)
    assert refused.retry_after_s == pytest.approx((4_000 + 1) * 60 / 1_000)


@pytest.mark.parametrize(("actual", "then_admitted"), [
    (100, 3),  # 900 estimated, 100 used: 800 refunded -> 100 + 800 = 900 left -> three more of 300
    (900, 0),  # estimate exact: 100 left
    (2_500, 0),  # 1600 more charged: debt
])
def test_record_refunds_or_charges_the_difference(actual: int, then_admitted: int) -> None:
    limiter = RateLimiter(table(tenant=RateLimit(tokens_per_minute=1_000)))
    ticket = check(limiter, 0.0, tokens=900)
    assert isinstance(ticket, Ticket)
    limiter.record(ticket, actual, 0.0)
    assert admitted(limiter, 0.0, 10, tokens=300) == then_admitted


def test_debt_is_floored_at_one_bucket() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(tokens_per_minute=600)))
    ticket = check(limiter, 0.0, tokens=10)
    assert isinstance(ticket, Ticket)
    limiter.record(ticket, 1_000_000, 0.0)
    refused = check(limiter, 0.0, tokens=1)
    assert isinstance(refused, RateLimited)
    assert refused.retry_after_s == pytest.approx(601 / 10)  # from -600 to 1 at 10 tokens/s


def test_release_gives_everything_back() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=2, tokens_per_minute=100)))
    first = check(limiter, 0.0, tokens=60)
    assert isinstance(first, Ticket)
    assert isinstance(check(limiter, 0.0, tokens=60), RateLimited)
    limiter.release(first, 0.0)
    assert isinstance(check(limiter, 0.0, tokens=100), Ticket)


def test_all_or_nothing_across_scopes() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=10), key=RateLimit(requests_per_minute=2)))
    assert admitted(limiter, 0.0, 5) == 2
    # The key's refusals took nothing from the tenant: another key of the tenant still gets 8.
    assert sum(isinstance(check(limiter, 0.0, key="k2"), Ticket) for _ in range(20)) == 8


@pytest.mark.parametrize(("kind", "user", "message"), [
    ("tenant", "", "tenant 'acme' requests per minute limit (3) reached; try again in 20s"),
    ("user", "alice", "user 'alice' of tenant 'acme' requests per minute limit (3) reached; try again in 20s"),
    ("route", "", "model 'chat' of tenant 'acme' requests per minute limit (3) reached; try again in 20s"),
    ("key", "", "API key 'k1' requests per minute limit (3) reached; try again in 20s"),
])
def test_each_scope_limits_and_names_itself(kind: str, user: str, message: str) -> None:
    limiter = RateLimiter(table(**{kind: RateLimit(requests_per_minute=3)}))
    assert admitted(limiter, 0.0, 3, user=user) == 3
    refused = check(limiter, 0.0, user=user)
    assert isinstance(refused, RateLimited)
    assert refused.scope.kind == kind
    error = refused.error()
    assert (error.status, error.type, error.code, error.message) == (429, "rate_limit_error",
                                                                      "rate_limit_exceeded", message)


def test_per_user_limit_is_per_user_and_skips_anonymous_requests() -> None:
    limiter = RateLimiter(table(user=RateLimit(requests_per_minute=2)))
    assert admitted(limiter, 0.0, 5, user="alice") == 2
    assert admitted(limiter, 0.0, 5, user="bob") == 2
    assert admitted(limiter, 0.0, 5) == 5


def test_headers_come_from_the_tightest_scope_per_dimension() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(600, 100_000), key=RateLimit(10, 1_000_000)))
    ticket = check(limiter, 0.0, tokens=1_000)
    assert isinstance(ticket, Ticket)
    assert ticket.requests_quota is not None and ticket.tokens_quota is not None
    assert (ticket.requests_quota.limit, ticket.requests_quota.remaining) == (10, 9)
    assert ticket.requests_quota.reset_s == pytest.approx(6.0)
    assert (ticket.tokens_quota.limit, ticket.tokens_quota.remaining) == (100_000, 99_000)
    assert ticket.tokens_quota.reset_s == pytest.approx(0.6)


def test_no_limits_no_quota() -> None:
    ticket = check(RateLimiter(table()), 0.0, tokens=10**9)
    assert isinstance(ticket, Ticket)
    assert ticket.requests_quota is None and ticket.tokens_quota is None


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.0004, "1ms"), (0.02, "20ms"), (0.999, "999ms"), (1, "1s"), (1.5, "1.5s"), (17.28, "17.28s"),
    (60, "1m0s"), (360, "6m0s"), (61.25, "1m1.25s"), (3600, "1h0m0s"), (3725.5, "1h2m5.5s"),
])
def test_reset_format_follows_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_configure_keeps_levels_of_scopes_that_remain() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60), key=RateLimit(requests_per_minute=60)))
    assert admitted(limiter, 0.0, 50) == 50
    limiter.configure(table(tenant=RateLimit(requests_per_minute=60)), 0.0)  # key limit removed, tenant unchanged
    assert admitted(limiter, 0.0, 50) == 10


def test_a_looser_policy_refills_at_its_rate_from_the_next_request() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60)))
    assert admitted(limiter, 0.0, 50) == 50  # 10 left
    limiter.configure(table(tenant=RateLimit(requests_per_minute=600)), 0.0)
    assert admitted(limiter, 0.0, 50) == 10  # the level is kept
    assert admitted(limiter, 1.0, 50) == 10  # and refills at the new 10/s


def test_a_tighter_policy_binds_on_the_next_request() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60)))
    assert admitted(limiter, 0.0, 50) == 50  # 10 left
    limiter.configure(table(tenant=RateLimit(requests_per_minute=5)), 0.0)
    assert admitted(limiter, 0.0, 50) == 5  # clamped to the new capacity at once
    assert admitted(limiter, 12.0, 50) == 1  # then one per 12 s


def test_a_removed_then_restored_limit_starts_full() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60)))
    assert admitted(limiter, 0.0, 60) == 60
    limiter.configure(table(), 0.0)
    assert admitted(limiter, 0.0, 100) == 100
    limiter.configure(table(tenant=RateLimit(requests_per_minute=60)), 0.0)
    assert admitted(limiter, 0.0, 100) == 60


def test_shares_scale_the_local_rate_and_expire_to_one_over_n() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=600), user=RateLimit(requests_per_minute=60)),
                          clock=clock)
    assert limiter.share("tenant/acme") == (1.0, 1.0)  # a lone data plane until told otherwise
    limiter.set_shares({"tenant/acme": (0.25, 0.5)}, expires_at=100.0, fleet_size=4)
    assert limiter.share("tenant/acme") == (0.25, 0.5)
    assert admitted(limiter, 0.0, 1_000) == 150  # 600 x 0.25
    assert admitted(limiter, 1.0, 1_000) == 2  # refill at 2.5/s: 2.5 accrued
    assert admitted(limiter, 1.0, 1_000, user="alice") == 0  # the tenant bucket is the bound
    # Unlisted scopes get 1/N: alice's bucket holds 15, the tenant's refills meanwhile.
    assert admitted(limiter, 61.0, 1_000, user="alice") == 15
    clock.now = 200.0
    assert admitted(limiter, 200.0, 1_000) == 150  # the lease expired: 1/N of 600 (level kept, clamped)
    assert limiter.share("tenant/acme") == (0.25, 0.25)


def test_share_growth_adds_rate_not_a_lump() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=600)), clock=clock)
    limiter.set_shares({"tenant/acme": (0.5, 0.5)}, expires_at=math.inf, fleet_size=2)
    assert admitted(limiter, 0.0, 1_000) == 300
    limiter.set_shares({"tenant/acme": (1.0, 1.0)}, expires_at=math.inf, fleet_size=2)
    assert admitted(limiter, 0.0, 1_000) == 0
    assert admitted(limiter, 1.0, 1_000) == 10


def test_an_already_expired_lease_falls_back_at_once() -> None:
    clock = Clock(50.0)
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=600)), clock=clock)
    limiter.set_shares({"tenant/acme": (1.0, 1.0)}, expires_at=10.0, fleet_size=3)
    assert limiter.share("tenant/acme") == pytest.approx((1 / 3, 1 / 3))
    assert admitted(limiter, 50.0, 1_000) == 200


def test_without_a_fleet_size_an_expired_lease_keeps_its_shares() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=600)), clock=clock)
    limiter.set_shares({"tenant/acme": (0.2, 0.2)}, expires_at=10.0)
    clock.now = 20.0
    assert admitted(limiter, 20.0, 1_000) == 120
    assert limiter.share("tenant/acme") == (0.2, 0.2)
    assert limiter.share("tenant/other") == (1.0, 1.0)


def test_scope_ids_spell_users_like_budget_scopes() -> None:
    limiter = RateLimiter(table(tenant=RateLimit(1), user=RateLimit(1), route=RateLimit(1), key=RateLimit(1)))
    check(limiter, 0.0, user="a/b c")
    assert sorted(limiter.demand()) == ["key/k1", "route/acme/chat", "tenant/acme", "user/acme/a%2Fb%20c"]


def test_demand_is_the_offered_rate_including_refusals() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(table(tenant=RateLimit(requests_per_minute=60)), clock=clock)
    for i in range(600):  # 10 requests/s offered for 60 s, 1/s admitted
        clock.now = i / 10
        check(limiter, clock.now, tokens=50)
    requests_s, tokens_s = limiter.demand()["tenant/acme"]
    assert requests_s == pytest.approx(10, rel=0.05)
    assert tokens_s == pytest.approx(500, rel=0.05)


def test_idle_scopes_are_dropped_and_come_back_full() -> None:
    clock = Clock(0.0)
    limiter = RateLimiter(table(user=RateLimit(requests_per_minute=5)), clock=clock)
    for n in range(100):
        check(limiter, 0.0, user=f"user-{n}")
    assert len(limiter.demand()) == 100
    clock.now = 1_000.0
    assert admitted(limiter, 1_000.0, 10, user="user-0") == 5
    assert list(limiter.demand()) == ["user/acme/user-0"]


def test_limits_from_snapshot() -> None:
    snap = pb.Snapshot(version="v")
    snap.tenants.add(name="acme", rate_limit=pb.RateLimit(requests_per_minute=600),
                     per_user_rate_limit=pb.RateLimit(tokens_per_minute=1000),
                     per_route_rate_limits=[pb.RouteRateLimit(route="chat", limit=pb.RateLimit(requests_per_minute=5))])
    snap.tenants.add(name="globex")
    snap.keys.add(id="k1", tenant="acme", rate_limit=pb.RateLimit(requests_per_minute=7, tokens_per_minute=70))
    snap.keys.add(id="k2", tenant="acme", rate_limit=pb.RateLimit())
    limits = LimitTable.from_snapshot(snap)
    assert dict(limits.tenants) == {"acme": RateLimit(600, 0)}
    assert dict(limits.per_user) == {"acme": RateLimit(0, 1000)}
    assert dict(limits.per_route) == {("acme", "chat"): RateLimit(5, 0)}
    assert dict(limits.keys) == {"k1": RateLimit(7, 70)}
