"""The analytics endpoints and the dashboard's sign-in on a real control plane, over real HTTP on loopback."""

from __future__ import annotations

from typing import Any

import aiohttp

from controlplane.server import ControlPlane
from tests.analytics.conftest import ADMIN_TOKEN

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def get(cp: ControlPlane, path: str, headers: dict[str, str] | None = None,
              **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{cp.admin_url}{path}", headers=headers or {}, allow_redirects=False, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, resp


async def sign_in(cp: ControlPlane, token: str) -> tuple[int, str, str]:
    """POST the login form as a browser does; the status, the session cookie (if any) and the page."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{cp.admin_url}/dashboard/login", data={"token": token}, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Set-Cookie", ""), await resp.text()


def cookie_pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


async def test_reports_answer_json_rows_with_integer_money(analytics_cp: ControlPlane) -> None:
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/daily-cost?by=tenant&tenant=globex", BEARER)
    assert status == 200, body
    assert body["by"] == "tenant" and body["until"] is None
    assert [(r["tenant"], r["requests"], r["costMicros"], r["costPico"], r["costUsd"]) for r in body["rows"]] == \
        [("globex", 2, 1_000_000, str(10**12), "1.00")] * 3  # exact: pico as a string, USD as a decimal
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/latency?by=route&route=gpt-4o", BEARER)
    assert {(r["route"], r["p50Ms"], r["p95Ms"], r["ttfbP95Ms"]) for r in body["rows"]} == \
        {("gpt-4o", 250, 385, 38.5)}
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/errors?by=deployment", BEARER)
    assert max(r["errorRate"] for r in body["rows"]) == 0.5
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/top-users?order=requests&limit=2", BEARER)
    assert [(r["user"], r["requests"], r["costUsd"]) for r in body["rows"]] == \
        [("alice", 9, "4.50"), ("bob", 3, "1.50")]


async def test_a_period_before_the_events_is_empty(analytics_cp: ControlPlane) -> None:
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/daily-cost?since=2020-01-01&until=2020-02-01",
                                BEARER)
    assert status == 200 and body["rows"] == [] and body["since"] == "2020-01-01T00:00:00+00:00"


async def test_bad_input_is_a_400_in_the_openai_shape(analytics_cp: ControlPlane) -> None:
    for query in ("daily-cost?by=user", "latency?since=yesterday", "top-users?limit=0",
                  "errors?since=2025-02-01&until=2025-01-01", "latency?since=0001-01-01T00:00:00%2B23:59"):
        status, body, _ = await get(analytics_cp, f"/admin/v1/analytics/{query}", BEARER)
        assert status == 400, query
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


async def test_a_period_at_the_end_of_the_calendar_is_a_400_not_a_500(analytics_cp: ControlPlane) -> None:
    # The dashboard's axis runs a year past ``since``: past year 9999 it overflowed (tests/edge/test_fuzz_admin.py).
    for path in ("/dashboard?since=9999-12-31T23:59:59%2B23:59", "/dashboard?since=9999-01-01",
                 "/admin/v1/analytics/daily-cost?until=9999-12-31"):
        status, body, _ = await get(analytics_cp, path, BEARER)
        assert status == 400, path
        assert body["error"]["type"] == "invalid_request_error" and "9998" in body["error"]["message"]


async def test_reports_need_the_admin_token(analytics_cp: ControlPlane) -> None:
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/daily-cost")
    assert status == 401 and body["error"]["type"] == "authentication_error"


async def test_sign_in_sets_a_strict_http_only_cookie_that_is_not_the_token(analytics_cp: ControlPlane) -> None:
    status, set_cookie, _ = await sign_in(analytics_cp, ADMIN_TOKEN)
    assert status == 303
    attributes = [a.strip().lower() for a in set_cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/dashboard" in attributes
    assert ADMIN_TOKEN not in set_cookie
    status, page, resp = await get(analytics_cp, "/dashboard", {"Cookie": cookie_pair(set_cookie)})
    assert status == 200 and resp.content_type == "text/html"
    assert 'id="top-users"' in page and "alice" in page and ADMIN_TOKEN not in page
    policy = dict(d.strip().split(" ", 1) for d in resp.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"  # its own script only, no inline
    assert "<script>" not in page and '<script src="/dashboard/dashboard.js" defer>' in page


async def test_the_cookie_opens_only_the_dashboard(analytics_cp: ControlPlane) -> None:
    _, set_cookie, _ = await sign_in(analytics_cp, ADMIN_TOKEN)
    cookie = {"Cookie": cookie_pair(set_cookie)}
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/daily-cost", cookie)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, _, _ = await get(analytics_cp, "/admin/v1/resources?kind=Tenant", cookie)
    assert status == 401
    async with aiohttp.ClientSession() as session, session.post(
            f"{analytics_cp.admin_url}/dashboard", headers=cookie, allow_redirects=False) as resp:
        assert resp.status == 401  # GET only


async def test_a_wrong_or_forged_credential_gets_the_login_form(analytics_cp: ControlPlane) -> None:
    status, set_cookie, page = await sign_in(analytics_cp, "not-the-token-xyz")
    assert status == 401 and not set_cookie
    assert 'id="login-error"' in page and "not-the-token-xyz" not in page and "alice" not in page
    forged = "99999999999.0123456789abcdef"
    status, page, _ = await get(analytics_cp, "/dashboard", {"Cookie": f"tollway_dashboard={forged}"})
    assert status == 401 and 'name="token"' in page and "alice" not in page
    status, page, _ = await get(analytics_cp, "/dashboard")
    assert status == 401 and 'id="login-error"' not in page


async def test_token_in_the_url_is_traded_for_a_cookie_and_dropped(analytics_cp: ControlPlane) -> None:
    status, _, resp = await get(analytics_cp, f"/dashboard?days=7&token={ADMIN_TOKEN}")
    assert status == 303
    assert resp.headers["Location"] == "/dashboard?days=7"
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    status, page, _ = await get(analytics_cp, "/dashboard?token=wrong")
    assert status == 401 and "wrong" not in page.split("<body>", 1)[1]


async def test_scripts_may_read_the_dashboard_with_the_bearer_token(analytics_cp: ControlPlane) -> None:
    status, page, _ = await get(analytics_cp, "/dashboard?cost_by=project", BEARER)
    assert status == 200 and "acme/web" in page
    status, body, _ = await get(analytics_cp, "/dashboard?days=1000", BEARER)
    assert status == 400 and "days" in body["error"]["message"]


async def test_the_refresh_json_and_its_bad_input(analytics_cp: ControlPlane) -> None:
    status, body, resp = await get(analytics_cp, "/dashboard/data.json?days=7", BEARER)
    assert status == 200 and resp.content_type == "application/json"
    assert 'id="budgets"' in body["main"] and 'id="hourly"' in body["main"] and ADMIN_TOKEN not in str(body)
    assert body["summary"]["requests"] == 18 and body["summary"]["costPico"] == str(9 * 10**12)
    assert body["dataplanes"] == [] and body["budgets"] == []  # the fixture's policy has none, nothing connected
    for bad in ("refresh=-1", "refresh=abc", "refresh=3601"):
        status, body, _ = await get(analytics_cp, f"/dashboard/data.json?{bad}", BEARER)
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
        assert "refresh" in body["error"]["message"]
    status, script, resp = await get(analytics_cp, "/dashboard/dashboard.js", BEARER)
    assert status == 200 and resp.content_type == "text/javascript" and "/dashboard/data.json" in script
