"""The pure health rules: ejection with growing back-off, the half-open trial, demotion, latency order, budgets."""

from __future__ import annotations

import pytest

from dataplane.core.decide import order_candidates
from dataplane.core.health import Health, HealthSettings, RetryBudget
from dataplane.core.validate import HubRequest, validate_chat
from dataplane.snapshot.runtime import Deployment, Failover, Prices, Provider, Route

pytestmark = pytest.mark.pure


def dep(name: str, price: int = 1) -> Deployment:
    provider = Provider(name=f"p-{name}", type="openai", base_url="http://x", region="eu", connect_timeout_s=1,
                        read_timeout_s=1, api_version="", mock_delay_ms=0, mock_tokens_per_second=0,
                        credential=None)
    return Deployment(name, provider, "m", frozenset(), 1000, 100, Prices.of(price, price, price))


def route(strategy: str) -> Route:
    return Route("r", strategy, Failover(3, 1, 2, frozenset({"5xx"})), ())


def chat() -> HubRequest:
    req = validate_chat({"model": "r", "messages": [{"role": "user", "content": "hi"}]}, 60)
    assert isinstance(req, HubRequest)
    return req


A, B, C = dep("a"), dep("b"), dep("c")
SETTINGS = HealthSettings(eject_after=3, base_ejection_s=10.0, max_ejection_s=35.0)


def test_consecutive_failures_eject_and_back_off_grows_to_the_cap() -> None:
    h = Health(SETTINGS)
    for _ in range(2):
        h.failed(A, "5xx", 0.0)
    assert h.is_available(A, 0.0), "two failures are not three"
    h.failed(A, "connect", 0.0)
    assert not h.is_available(A, 9.9)
    assert h.is_available(A, 10.0), "back-off over: half-open"
    for now, length in ((10.0, 20.0), (30.0, 35.0), (65.0, 35.0)):  # trial fails: twice as long, capped
        h.attempting(A, now)
        assert not h.is_available(A, now), "one trial at a time"
        h.failed(A, "timeout", now)
        assert not h.is_available(A, now + length - 0.01)
        assert h.is_available(A, now + length)


def test_a_successful_trial_closes_the_breaker() -> None:
    h = Health(SETTINGS)
    for _ in range(3):
        h.failed(A, "5xx", 0.0)
    h.attempting(A, 10.0)
    h.succeeded(A, 0.05)
    assert h.is_available(A, 10.0)
    h.failed(A, "5xx", 11.0)
    assert h.is_available(A, 11.0), "the count starts again from zero"
    assert h.view([A], 11.0)[0].state == "healthy"


@pytest.mark.parametrize("kind", ["429", "4xx", "auth", "unsupported"])
def test_failures_that_say_nothing_about_health_do_not_count(kind: str) -> None:
    h = Health(SETTINGS)
    for _ in range(10):
        h.failed(A, kind, 0.0)
    assert h.is_available(A, 0.0)


def test_unavailable_candidates_move_to_the_end_but_stay_as_last_resort() -> None:
    h = Health(SETTINGS)
    for _ in range(3):
        h.failed(A, "5xx", 0.0)
    h.provider_checked(C.provider.name, False, 0.0)
    assert h.demote([A, B, C], 1.0) == [B, A, C]
    assert h.demote([A, C], 1.0) == [A, C], "nothing available: strategy order, as a last resort"
    assert [v.state for v in h.view([A, B, C], 1.0)] == ["ejected", "healthy", "provider-down"]
    h.provider_checked(C.provider.name, True, 2.0)
    assert h.demote([C, B], 2.0) == [C, B]


def test_every_unhealthy_state_says_why_and_since_when() -> None:
    h = Health(SETTINGS)
    for i in range(3):
        h.failed(A, "5xx", 100.0 + i, f"provider 'p-a' answered HTTP 50{i}")
    h.provider_checked(B.provider.name, False, 101.0, "active check: connection refused")
    h.provider_checked(B.provider.name, False, 105.0, "active check: no answer within 2s")
    h.credentials_checked({C.provider.name: "environment variable KEY_C is not set"}, 103.0)
    views = {v.deployment: v for v in h.view([A, B, C], 110.0, wall=1_000_110.0)}
    assert (views["a"].state, views["a"].reason, views["a"].since_unix_s) == (
        "ejected", "provider 'p-a' answered HTTP 502", 1_000_102.0)  # the last error; since the breaker opened
    assert (views["b"].state, views["b"].reason, views["b"].since_unix_s) == (
        "provider-down", "active check: no answer within 2s", 1_000_101.0)  # the latest finding; since first down
    assert (views["c"].state, views["c"].reason, views["c"].since_unix_s) == (
        "no-credential", "environment variable KEY_C is not set", 1_000_103.0)
    assert [v.state for v in h.view([A], 112.0, wall=0.0)] == ["trial"]  # back-off over: the reason stays
    assert h.view([A], 112.0, wall=0.0)[0].reason == "provider 'p-a' answered HTTP 502"
    h.succeeded(A)
    assert (h.view([A], 113.0)[0].reason, h.view([A], 113.0)[0].since_unix_s) == ("", 0.0)


def test_a_deployment_without_credential_is_never_planned_and_never_healthy() -> None:
    h = Health(SETTINGS)
    h.credentials_checked({A.provider.name: "environment variable KEY_A is not set"}, 0.0)
    assert h.demote([A, B], 0.0) == [B], "dropped, not demoted: an attempt could only fail locally"
    assert h.demote([A], 0.0) == []
    assert not h.is_available(A, 0.0) and h.credential_problem(A) == "environment variable KEY_A is not set"
    assert h.credential_problem(B) == ""
    h.provider_checked(A.provider.name, True, 1.0)  # its endpoint answering changes nothing
    assert h.view([A], 1.0)[0].state == "no-credential"
    # A new snapshot whose provider has it again: healthy at once; one that still lacks it keeps its "since".
    h.credentials_checked({A.provider.name: "environment variable KEY_A is not set"}, 5.0)
    assert h.view([A], 6.0, wall=6.0)[0].since_unix_s == 0.0
    h.credentials_checked({}, 7.0)
    assert h.view([A], 7.0)[0].state == "healthy" and h.demote([A, B], 7.0) == [A, B]


def test_provider_back_up_ends_the_back_off_early() -> None:
    h = Health(SETTINGS)
    for _ in range(3):
        h.failed(A, "5xx", 0.0)
    assert not h.is_available(A, 1.0)
    h.provider_checked(A.provider.name, True, 1.0)
    assert h.is_available(A, 1.0)


def test_latency_strategy_orders_by_ewma_of_time_to_first_byte() -> None:
    h = Health(SETTINGS)
    h.succeeded(A, 0.300)
    h.succeeded(B, 0.100)
    h.succeeded(C, 0.200)
    pairs = [(A, 1), (B, 1), (C, 1)]
    assert order_candidates(route("latency"), pairs, chat(), 0.0, h, 0.0) == [B, C, A]
    for _ in range(10):
        h.succeeded(B, 0.500)  # B slows down: the EWMA follows
    assert order_candidates(route("latency"), pairs, chat(), 0.0, h, 0.0) == [C, A, B]
    unmeasured = dep("d")
    assert order_candidates(route("latency"), [*pairs, (unmeasured, 1)], chat(), 0.0, h, 0.0)[0] == unmeasured


def test_cheapest_ties_are_broken_by_health_then_latency() -> None:
    h = Health(SETTINGS)
    cheap, a, b = dep("cheap", 1), dep("a", 5), dep("b", 5)
    h.succeeded(a, 0.300)
    h.succeeded(b, 0.100)
    pairs = [(a, 1), (b, 1), (cheap, 1)]
    assert order_candidates(route("cheapest"), pairs, chat(), 0.0, h, 0.0) == [cheap, b, a]
    for _ in range(3):
        h.failed(b, "5xx", 0.0)
    assert order_candidates(route("cheapest"), pairs, chat(), 0.0, h, 1.0) == [cheap, a, b]


def test_retry_budget_caps_retries_at_a_share_of_requests_with_a_floor() -> None:
    budget = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10)  # floor: 10 per window
    for _ in range(100):
        budget.request(5.0)
    allowed = sum(budget.try_retry(5.0) for _ in range(50))
    assert allowed == 20
    later = RetryBudget(ratio=0.2, min_per_s=1.0, window_s=10)
    assert sum(later.try_retry(0.0) for _ in range(50)) == 10, "few requests: the floor"
    assert later.try_retry(20.0), "the window slid past the old retries"
