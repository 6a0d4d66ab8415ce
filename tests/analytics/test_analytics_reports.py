"""The analytics reports on both engines (a real DuckDB file, a real PostgreSQL database): exact sums, quantiles
and rates over ``known_events``, the same answer from either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from controlplane.usage.analytics import (
    TOKEN_PARTS,
    Analytics,
    Span,
    TokenKinds,
    daily_cost_query,
    token_kinds_query,
    top_users_query,
)
from controlplane.usage.db import UsageDB
from tests.analytics.conftest import batch, known_events, today


@pytest.fixture
async def reports(any_usage_db: UsageDB) -> AsyncIterator[Analytics]:
    assert await any_usage_db.store_batch(batch(known_events(today() - timedelta(days=2))))
    yield Analytics(any_usage_db)


def days() -> list[date]:
    first = (today() - timedelta(days=2)).date()
    return [first + timedelta(days=d) for d in range(3)]


def ms(day: date) -> int:
    return int(today().replace(year=day.year, month=day.month, day=day.day).timestamp() * 1000)


@pytest.mark.parametrize(("by", "acme", "globex"), [
    ("tenant", "acme", "globex"), ("project", "acme/web", "globex/api"), ("tag", "chat", "batch"),
])
async def test_daily_cost_per_team_project_and_use_case(reports: Analytics, by: str, acme: str, globex: str) -> None:
    rows = await reports.daily_cost(by, Span())  # type: ignore[arg-type]
    got = [(r.day, r.group, r.requests, r.cost_pico // 10**6, r.input_tokens, r.output_tokens) for r in rows]
    expected = []
    for d, day in enumerate(days()):
        expected.append((day, acme, 4, 1_000_000 * (d + 1), 4000, 400))
        expected.append((day, globex, 2, 1_000_000, 4000, 400))
    # Within a day, the biggest cost comes first; on day 0 the two tie and sort by name.
    assert sorted(got) == sorted(expected)
    assert [g[1] for g in got if g[0] == days()[2]] == [acme, globex]
    assert all(isinstance(r.cost_pico, int) for r in rows)


async def test_time_range_is_half_open(reports: Analytics) -> None:
    d0, d1, d2 = days()
    rows = await reports.daily_cost("tenant", Span(since_ms=ms(d1)))
    assert {r.day for r in rows} == {d1, d2}
    rows = await reports.daily_cost("tenant", Span(until_ms=ms(d1)))
    assert {r.day for r in rows} == {d0}
    rows = await reports.daily_cost("tenant", Span(since_ms=ms(d1), until_ms=ms(d2)))
    assert {(r.day, r.group, r.cost_pico // 10**6) for r in rows} == {
        (d1, "acme", 2_000_000), (d1, "globex", 1_000_000)}


async def test_latency_quantiles_per_model_and_day_over_successful_requests(reports: Analytics) -> None:
    rows = await reports.latency("route", Span())
    by = {(r.day, r.group): r for r in rows}
    for day in days():
        gpt = by[(day, "gpt-4o")]
        # quantile_cont over 100, 200, 300, 400: p50 interpolates to 250, p95 to 385.
        assert (gpt.requests, gpt.p50_ms, gpt.p95_ms, gpt.ttfb_p50_ms, gpt.ttfb_p95_ms) == (4, 250, 385, 25, 38.5)
    # Today's failed claude request (1000 ms, 502) is not in the latency figures.
    assert [(by[(d, "claude")].requests, by[(d, "claude")].p95_ms) for d in days()] == [(2, 500), (2, 500), (1, 500)]
    deployments = {r.group for r in await reports.latency("deployment", Span())}
    assert deployments == {"openai-gpt-4o", "anthropic-claude"}


async def test_error_rates_by_provider_and_deployment(reports: Analytics) -> None:
    d0, d1, d2 = days()
    rows = await reports.errors("provider", Span())
    got = {(r.day, r.group): (r.requests, r.errors, r.error_rate) for r in rows}
    assert got[(d2, "anthropic")] == (2, 1, 0.5)
    assert got[(d0, "anthropic")] == (2, 0, 0.0)
    assert all(got[(d, "openai")] == (4, 0, 0.0) for d in (d0, d1, d2))
    rows = await reports.errors("deployment", Span(since_ms=ms(d2)))
    assert {(r.group, r.requests, r.errors) for r in rows} == {("anthropic-claude", 2, 1), ("openai-gpt-4o", 4, 0)}


async def test_top_users_by_cost_and_by_requests(reports: Analytics) -> None:
    rows = await reports.top_users(Span())
    assert [(u.tenant, u.user, u.requests, u.cost_pico // 10**6) for u in rows] == [
        ("acme", "alice", 9, 4_500_000), ("acme", "bob", 3, 1_500_000), ("globex", "carol", 3, 1_500_000),
    ]  # requests without a user are not a user
    assert [(u.user, u.requests) for u in await reports.top_users(Span(), "requests", 1)] == [("alice", 9)]
    only_globex = await reports.top_users(Span(), filters={"tenant": "globex"})
    assert [u.user for u in only_globex] == ["carol"]


async def test_token_kinds_per_model_and_per_tenant(reports: Analytics) -> None:
    rows = await reports.token_kinds("route", Span())
    assert rows == [  # biggest cost first; writes at both rates are one kind, reasoning is part of the output
        TokenKinds("gpt-4o", requests=12, input_tokens=12_000, cached_input_tokens=3_000, cache_write_tokens=0,
                   output_tokens=1_200, reasoning_tokens=0, cost_pico=6 * 10**12),
        TokenKinds("claude", requests=6, input_tokens=12_000, cached_input_tokens=7_200, cache_write_tokens=2_400,
                   output_tokens=1_200, reasoning_tokens=300, cost_pico=3 * 10**12),
    ]
    assert rows[1].parts() == {"uncached input": 2_400, "cache read": 7_200, "cache write": 2_400,
                               "non-reasoning output": 900, "reasoning": 300}
    tenants = await reports.token_kinds("tenant", Span(since_ms=ms(days()[2])), {"tag": "batch"})
    assert [(r.group, r.requests, r.cache_write_tokens, r.reasoning_tokens) for r in tenants] == [
        ("globex", 2, 800, 100)]
    projects = await reports.token_kinds("project", Span())
    assert [r.group for r in projects] == ["acme/web", "globex/api"]


@pytest.mark.parametrize(("kinds", "parts"), [
    ((100, 30, 20, 10, 4), (50, 30, 20, 6, 4)),
    ((10, 15, 5, 3, 9), (0, 10, 0, 0, 3)),  # an upstream reported more cached (or reasoning) than in total
])
def test_token_parts_never_overlap_or_go_negative(kinds: tuple[int, ...], parts: tuple[int, ...]) -> None:
    inp, cached, writes, out, reasoning = kinds
    row = TokenKinds("m", 1, inp, cached, writes, out, reasoning, 0)
    assert tuple(row.parts().values()) == parts and list(row.parts()) == list(TOKEN_PARTS)


async def test_filters_narrow_every_report(reports: Analytics) -> None:
    rows = await reports.daily_cost("tenant", Span(), {"tag": "batch"})
    assert {r.group for r in rows} == {"globex"}
    errors = await reports.errors("provider", Span(), {"route": "gpt-4o"})
    assert {r.group for r in errors} == {"openai"}
    assert await reports.latency("route", Span(), {"tenant": "nobody"}) == []


def test_only_known_names_reach_the_sql() -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        daily_cost_query("user; DROP TABLE usage_events", Span())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="filters must be among"):
        daily_cost_query("tenant", Span(), {"key_id = key_id OR 1": "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="limit"):
        top_users_query(Span(), "cost", 0)
    with pytest.raises(ValueError, match="by must be one of"):
        token_kinds_query("tag", Span())  # type: ignore[arg-type]
    sql, params = daily_cost_query("tenant", Span(1, 2), {"tenant": "x'; --"})
    assert "x'; --" not in sql and params == [1, 2, "x'; --"]
