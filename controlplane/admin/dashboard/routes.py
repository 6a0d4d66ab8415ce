"""``GET /dashboard``: usage analytics and operations as one HTML page on the admin port — budgets (spend against
limit, burn rate, projected month end), fleet health (data planes, snapshot versions, ACK/NACK; deployments and
their breakers), the last 24 h by hour, cost per team over time, latency trends, error rates, top keys, projects
and users, tokens of each kind per model (or tenant, project...) — with charts drawn on the server as inline SVG.

Refresh. The page's one script (``dashboard_script``, at ``/dashboard/dashboard.js``) fetches
``GET /dashboard/data.json`` (same query as the page) every ``refresh`` seconds (default ``DEFAULT_REFRESH_S``;
``refresh=0`` turns it off) and swaps the sections in; the JSON is ``{"generatedAt", "main"}`` (the sections'
HTML, rendered by the same functions as the page) plus ``summary``, ``budgets`` and ``dataplanes`` as numbers.

Auth. Scripts send ``Authorization: Bearer <admin token>`` as for the rest of the admin API. A browser signs in
once (the form at ``/dashboard``, or ``/dashboard?token=...``, which is redirected away at once) and then holds
a session cookie: ``HttpOnly``, ``SameSite=Strict``, ``Path=/dashboard``, valid for ``SESSION_SECONDS``. The
cookie is not the token but ``expiry.HMAC(token, expiry)``, so it cannot be used as a bearer token, it expires,
and rotating the admin token ends every session; no session state is kept. The admin app's auth middleware
hands every ``/dashboard*`` request to ``dashboard_gate``, the only place the cookie is read, and it accepts the
cookie for GET/HEAD only. The token is compared in constant time and never written into a page or a log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import cast

import orjson
from aiohttp import web

from controlplane.admin.dashboard import charts
from controlplane.admin.dashboard.data import gather_extras
from controlplane.admin.dashboard.page import SCRIPT_PATH, Page, render_login, render_main, render_page
from controlplane.admin.dashboard.script import SCRIPT
from controlplane.errors import InvalidRequest, is_count
from controlplane.usage import analytics as an
from tollway.money import PICO_PER_MICRO, usd

ANALYTICS = web.AppKey("analytics", an.Analytics)
PATH = "/dashboard"
LOGIN_PATH = "/dashboard/login"
LOGOUT_PATH = "/dashboard/logout"
COOKIE = "tollway_dashboard"
SESSION_SECONDS = 12 * 3600
MAX_DAYS = 366
MAX_SERIES = 8
MAX_TOKEN_ROWS = 20  # groups in the token-kind table and figure, biggest cost first
DATA_PATH = "/dashboard/data.json"
DEFAULT_REFRESH_S = 30
MAX_REFRESH_S = 3600
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_dashboard_path(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


def session_value(admin_token: str, expires: int) -> str:
    mac = hmac.new(admin_token.encode(), f"tollway-dashboard:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def is_valid_session(value: str, admin_token: str, now: float) -> bool:
    expires, _, _ = value.partition(".")
    if not is_count(expires) or int(expires) <= now:
        return False
    return hmac.compare_digest(value.encode(), session_value(admin_token, int(expires)).encode())


def _is_token(candidate: str, admin_token: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_token.encode())


def _has_bearer(request: web.Request, admin_token: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and _is_token(token.strip(), admin_token)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)


def _signed_in(request: web.Request, admin_token: str, location: str) -> web.Response:
    expires = int(time.time()) + SESSION_SECONDS
    response = web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})
    response.set_cookie(COOKIE, session_value(admin_token, expires), max_age=SESSION_SECONDS, path=PATH,
                        httponly=True, samesite="Strict", secure=request.secure)
    return response


async def dashboard_gate(request: web.Request, handler: Handler, admin_token: str) -> web.StreamResponse:
    """Authenticate a ``/dashboard*`` request (see the module docstring); the admin middleware calls this."""
    if request.path == LOGOUT_PATH:
        response = web.Response(status=303, headers={"Location": PATH, **SECURITY_HEADERS})
        response.del_cookie(COOKIE, path=PATH)
        return response
    if request.path == LOGIN_PATH and request.method == "POST":
        try:
            token = (await request.post()).get("token")
        except ValueError:  # a body that is not the form it says (broken multipart, not UTF-8): no token in it
            token = None
        if isinstance(token, str) and token and _is_token(token, admin_token):
            return _signed_in(request, admin_token, PATH)
        return _html(render_login(failed=True), status=401)
    if request.method not in ("GET", "HEAD"):
        return _html(render_login(failed=False), status=401)
    token = request.query.get("token")
    if token is not None:  # traded for a cookie at once, so the token leaves the address bar
        if token and _is_token(token, admin_token):
            rest = {k: v for k, v in request.query.items() if k != "token"}
            return _signed_in(request, admin_token, str(request.rel_url.with_query(rest)))
        return _html(render_login(failed=True), status=401)
    cookie = request.cookies.get(COOKIE, "")
    if _has_bearer(request, admin_token) or (cookie and is_valid_session(cookie, admin_token, time.time())):
        return await handler(request)
    return _html(render_login(failed=False), status=401)


def _period(query: Mapping[str, str], now: datetime) -> an.Period:
    days = query.get("days", "")
    if days and not query.get("since"):
        if not is_count(days) or not 1 <= int(days) <= MAX_DAYS:
            raise InvalidRequest(f"days: expected a number from 1 to {MAX_DAYS}")
        return an.parse_period({}, now, int(days))
    return an.parse_period(query, now)


def day_range(period: an.Period, now: datetime) -> list[date]:
    """Every UTC day the period touches, up to today at the latest (the charts' x axis)."""
    first = period.since.date()
    end = (period.until - timedelta(microseconds=1)).date() if period.until else now.astimezone(UTC).date()
    end = min(end, first + timedelta(days=MAX_DAYS))
    return [first + timedelta(days=i) for i in range((end - first).days + 1)]


def _top(names_by_weight: Mapping[str, float], limit: int) -> list[str]:
    return [n for n, _ in sorted(names_by_weight.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def cost_series(rows: list[an.DailyCost]) -> dict[str, dict[date, float]]:
    """Cost (micro-dollars) per group and day, biggest group first; beyond ``MAX_SERIES`` groups, one "other"."""
    keep = list(an.totals(rows))[:MAX_SERIES]
    series: dict[str, dict[date, float]] = {name: {} for name in keep}
    for r in rows:
        name = r.group if r.group in keep else "other"
        by_day = series.setdefault(name, {})
        by_day[r.day] = by_day.get(r.day, 0.0) + r.cost_pico / PICO_PER_MICRO  # charts plot micro-dollars
    return series


def latency_series(rows: list[an.DailyLatency]) -> tuple[dict[str, dict[date, float]], dict[str, str]]:
    """``<model> p50`` and ``<model> p95`` per model (the busiest few), each pair in one color."""
    weights: dict[str, float] = {}
    for r in rows:
        weights[r.group] = weights.get(r.group, 0) + r.requests
    models = _top(weights, MAX_SERIES // 2)
    series: dict[str, dict[date, float]] = {}
    colors: dict[str, str] = {}
    for n, model in enumerate(models):
        for q in ("p50", "p95"):
            series[f"{model} {q}"] = {}
            colors[f"{model} {q}"] = charts.color(n)
    for r in rows:
        if r.group in models:
            series[f"{r.group} p50"][r.day] = r.p50_ms
            series[f"{r.group} p95"][r.day] = r.p95_ms
    return series, colors


def error_series(rows: list[an.DailyErrors]) -> dict[str, dict[date, float]]:
    """Error rate in percent per provider and day (the busiest few providers)."""
    weights: dict[str, float] = {}
    for r in rows:
        weights[r.group or "(none)"] = weights.get(r.group or "(none)", 0) + r.requests
    keep = _top(weights, MAX_SERIES)
    series: dict[str, dict[date, float]] = {name: {} for name in keep}
    for r in rows:
        if (r.group or "(none)") in series:
            series[r.group or "(none)"][r.day] = round(100 * r.error_rate, 2)
    return series


def _refresh(query: Mapping[str, str]) -> int:
    value = query.get("refresh", "")
    if not value:
        return DEFAULT_REFRESH_S
    if not is_count(value) or int(value) > MAX_REFRESH_S:
        raise InvalidRequest(f"refresh: expected seconds from 0 (off) to {MAX_REFRESH_S}")
    return int(value)


async def _page(request: web.Request) -> Page:
    q = request.query
    now = datetime.now(UTC)
    period = _period(q, now)
    cost_by = q.get("cost_by", "tenant")
    if cost_by not in an.COST_DIMENSIONS:
        raise InvalidRequest(f"cost_by: expected one of {', '.join(an.COST_DIMENSIONS)}")
    tokens_by = q.get("tokens_by", "route")
    if tokens_by not in an.TOKEN_DIMENSIONS:
        raise InvalidRequest(f"tokens_by: expected one of {', '.join(an.TOKEN_DIMENSIONS)}")
    refresh = _refresh(q)
    filters = an.parse_filters(q)
    reports = request.app[ANALYTICS]
    span = period.span
    (cost, latency, errors, by_deployment, users, tokens), extras = await asyncio.gather(asyncio.gather(
        reports.daily_cost(cast(an.CostDimension, cost_by), span, filters), reports.latency("route", span, filters),
        reports.errors("provider", span, filters), reports.errors("deployment", span, filters),
        reports.top_users(span, "cost", 20, filters),
        reports.token_kinds(cast(an.TokenDimension, tokens_by), span, filters),
    ), gather_extras(request.app, reports, period, cast(an.CostDimension, cost_by), filters))
    return Page(
        period=period, days=day_range(period, now), cost_by=cost_by, filters={str(k): v for k, v in filters.items()},
        query_days=q.get("days", ""), cost=cost_series(cost), latency=latency_series(latency),
        errors=error_series(errors), by_deployment=by_deployment, users=users,
        tokens_by=tokens_by, tokens=tokens[:MAX_TOKEN_ROWS],
        requests=sum(r.requests for r in errors), failed=sum(r.errors for r in errors),
        cost_pico=sum(r.cost_pico for r in cost) if cost_by != "tag" else None,
        extras=extras, refresh_s=refresh,
    )


async def dashboard(request: web.Request) -> web.Response:
    return _html(render_page(await _page(request)))


def _data(page: Page) -> dict[str, object]:
    """The JSON a refresh fetches: the sections' HTML, and the headline numbers for scripts (money exact)."""
    x = page.extras
    fleet = x.fleet
    return {
        "generatedAt": datetime.fromtimestamp(x.as_of, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "main": render_main(page),
        "summary": {"requests": page.requests, "failed": page.failed,
                    "costPico": str(page.cost_pico) if page.cost_pico is not None else None},
        "budgets": None if x.budgets is None else [
            {"scope": s.budget.scope, "limitPico": str(s.limit_pico), "spentPico": str(s.spent_pico),
             "heldPico": str(s.held_pico), "burnPerDayPico": str(s.burn_per_day_pico),
             "projectedPico": str(s.projected_pico), "projectedUsd": usd(s.projected_pico)} for s in x.budgets],
        "dataplanes": None if fleet is None else [
            {"nodeId": d.node_id, "region": d.region, "version": d.version, "status": d.status,
             "connected": d.connected, "lastSeen": d.last_seen} for d in fleet.dataplanes],
    }


async def dashboard_data(request: web.Request) -> web.Response:
    body = orjson.dumps(_data(await _page(request)))
    return web.Response(body=body, content_type="application/json", headers=SECURITY_HEADERS)


async def dashboard_script(request: web.Request) -> web.Response:
    return web.Response(text=SCRIPT, content_type="text/javascript", charset="utf-8", headers=SECURITY_HEADERS)


def add_dashboard_routes(app: web.Application) -> None:
    """Register the dashboard; it reads ``app[ANALYTICS]``, which the caller sets, and, when set,
    ``app[dashboard_data.SOURCES]`` (budgets and fleet health)."""
    app.router.add_get(PATH, dashboard)
    app.router.add_get(PATH + "/", dashboard)
    app.router.add_get(DATA_PATH, dashboard_data)
    app.router.add_get(SCRIPT_PATH, dashboard_script)
