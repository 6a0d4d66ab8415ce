"""``GET /admin/v1/analytics/{daily-cost,latency,errors,top-users,tokens}``: the reports of
``controlplane.usage.analytics`` as JSON, and (through ``add_analytics_routes``) the HTML dashboard of
``controlplane.admin.dashboard.routes``.

Every report takes ``since``/``until`` (ISO dates or times, UTC, ``until`` exclusive; default: the last 30 days,
today included) and the filters ``tenant``, ``project``, ``user``, ``route``, ``deployment``, ``provider``,
``region``, ``tag``. ``by`` picks the group (daily-cost: tenant|project|tag, latency: route|deployment, errors:
provider|deployment, tokens: route|deployment|provider|tenant|project); top-users takes ``order=cost|requests`` and
``limit`` (1-1000, default 10). Answers are ``{"since", "until", "by", "rows": [...]}``; money is ``costPico``
(exact integer pico-dollars, as a string), ``costUsd`` (a decimal string) and ``costMicros`` (rounded). ``tokens``
answers the period's totals per group with every token kind billed apart (``cachedInputTokens`` and
``cacheWriteTokens`` are parts of ``inputTokens``, ``reasoningTokens`` of ``outputTokens``). Bad input raises
``InvalidRequest`` (400, rendered by the admin app's error middleware).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from aiohttp import web

from controlplane.admin.dashboard.routes import ANALYTICS, add_dashboard_routes
from controlplane.errors import InvalidRequest, is_count
from controlplane.usage import analytics as an
from controlplane.usage.db import UsageDB
from tollway.money import micros_rounded, usd


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = query.get(name, allowed[0])
    if value not in allowed:
        raise InvalidRequest(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _answer(period: an.Period, by: str, rows: list[dict[str, Any]]) -> web.Response:
    body = {**period.to_json(), "by": by, "rows": rows}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def daily_cost(request: web.Request) -> web.Response:
    q = request.query
    by = cast(an.CostDimension, _choice(q, "by", an.COST_DIMENSIONS))
    period = an.parse_period(q, datetime.now(UTC))
    rows = await request.app[ANALYTICS].daily_cost(by, period.span, an.parse_filters(q))
    return _answer(period, by, [
        {"day": r.day.isoformat(), by: r.group, "requests": r.requests, "inputTokens": r.input_tokens,
         "outputTokens": r.output_tokens,
         "costMicros": micros_rounded(r.cost_pico), "costPico": str(r.cost_pico),
         "costUsd": usd(r.cost_pico)}
        for r in rows])


async def latency(request: web.Request) -> web.Response:
    q = request.query
    by = cast(an.ModelDimension, _choice(q, "by", an.MODEL_DIMENSIONS))
    period = an.parse_period(q, datetime.now(UTC))
    rows = await request.app[ANALYTICS].latency(by, period.span, an.parse_filters(q))
    return _answer(period, by, [
        {"day": r.day.isoformat(), by: r.group, "requests": r.requests, "p50Ms": r.p50_ms, "p95Ms": r.p95_ms,
         "ttfbP50Ms": r.ttfb_p50_ms, "ttfbP95Ms": r.ttfb_p95_ms}
        for r in rows])


async def errors(request: web.Request) -> web.Response:
    q = request.query
    by = cast(an.ErrorDimension, _choice(q, "by", an.ERROR_DIMENSIONS))
    period = an.parse_period(q, datetime.now(UTC))
    rows = await request.app[ANALYTICS].errors(by, period.span, an.parse_filters(q))
    return _answer(period, by, [
        {"day": r.day.isoformat(), by: r.group, "requests": r.requests, "errors": r.errors,
         "errorRate": round(r.error_rate, 6)}
        for r in rows])


async def top_users(request: web.Request) -> web.Response:
    q = request.query
    order = cast(an.UserOrder, _choice(q, "order", an.USER_ORDERS))
    limit = q.get("limit", "10")
    if not is_count(limit) or not 1 <= int(limit) <= an.MAX_TOP_USERS:
        raise InvalidRequest(f"limit: expected a number from 1 to {an.MAX_TOP_USERS}, got {limit!r}")
    period = an.parse_period(q, datetime.now(UTC))
    rows = await request.app[ANALYTICS].top_users(period.span, order, int(limit), an.parse_filters(q))
    return _answer(period, order, [
        {"tenant": r.tenant, "user": r.user, "requests": r.requests, "inputTokens": r.input_tokens,
         "outputTokens": r.output_tokens,
         "costMicros": micros_rounded(r.cost_pico), "costPico": str(r.cost_pico),
         "costUsd": usd(r.cost_pico)}
        for r in rows])


async def tokens(request: web.Request) -> web.Response:
    q = request.query
    by = cast(an.TokenDimension, _choice(q, "by", an.TOKEN_DIMENSIONS))
    period = an.parse_period(q, datetime.now(UTC))
    rows = await request.app[ANALYTICS].token_kinds(by, period.span, an.parse_filters(q))
    return _answer(period, by, [
        {by: r.group, "requests": r.requests, "inputTokens": r.input_tokens,
         "cachedInputTokens": r.cached_input_tokens, "cacheWriteTokens": r.cache_write_tokens,
         "outputTokens": r.output_tokens, "reasoningTokens": r.reasoning_tokens,
         "costMicros": micros_rounded(r.cost_pico), "costPico": str(r.cost_pico), "costUsd": usd(r.cost_pico)}
        for r in rows])


def add_analytics_routes(app: web.Application, db: UsageDB) -> None:
    """The JSON reports under /admin/v1/analytics/ and the dashboard under /dashboard (see its auth rules)."""
    app[ANALYTICS] = an.Analytics(db)
    app.router.add_get("/admin/v1/analytics/daily-cost", daily_cost)
    app.router.add_get("/admin/v1/analytics/latency", latency)
    app.router.add_get("/admin/v1/analytics/errors", errors)
    app.router.add_get("/admin/v1/analytics/top-users", top_users)
    app.router.add_get("/admin/v1/analytics/tokens", tokens)
    add_dashboard_routes(app)
