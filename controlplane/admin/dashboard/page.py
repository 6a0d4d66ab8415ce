"""The dashboard's HTML: pure functions from report rows to one self-contained page (styles inline, charts as
inline SVG from ``charts``). Every value from the database is escaped. The page carries no secret: the admin token
is never passed in, and forms never pre-fill it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape

from controlplane.admin.dashboard import charts
from controlplane.admin.dashboard import sections as sections
from controlplane.admin.dashboard.sections import Extras, money
from controlplane.usage import analytics as an
from tollway.money import PICO_PER_MICRO

__all__ = ["Page", "money", "render_login", "render_main", "render_page"]

SCRIPT_PATH = "/dashboard/dashboard.js"
STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;align-items:center;gap:24px}
header h1{font-size:18px;margin:0}header a{color:#cfd6e4}
main{padding:16px 24px;display:grid;grid-template-columns:repeat(auto-fit,minmax(620px,1fr));gap:16px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:12px 16px}
section h2{font-size:15px;margin:0 0 8px}
form.filters{display:flex;gap:12px;align-items:end;flex-wrap:wrap}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#5b6475}
.tiles{display:flex;gap:16px;flex-wrap:wrap}.tile{min-width:140px}
.tile b{display:block;font-size:22px}.tile span{font-size:12px;color:#5b6475}
svg.chart{width:100%;height:auto}svg .grid{stroke:#e6e8ee}svg .tick{font-size:11px;fill:#5b6475}
ul.legend{list-style:none;padding:0;margin:6px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.swatch{display:inline-block;width:18px;height:0;border-top:3px solid;margin-right:6px;vertical-align:middle}
.swatch.dashed{border-top-style:dashed}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f4}td.n,th.n{text-align:right}
.empty{color:#5b6475}.error{color:#b00020}.note{font-size:12px;color:#5b6475;margin:6px 0}
.login{max-width:360px;margin:80px auto;background:#fff;padding:24px;border:1px solid #e1e4ea;border-radius:6px}
.login input{width:100%;box-sizing:border-box;margin:8px 0;padding:6px}
section.wide{grid-column:1/-1}.ok{color:#2e7d32}.warn{color:#b00020}
.meter{position:relative;height:10px;min-width:120px;background:#eef0f4;border-radius:5px;overflow:hidden}
.meter .spent{position:absolute;left:0;top:0;bottom:0;background:#4e79a7}
.meter .projected{position:absolute;top:0;bottom:0;width:2px;margin-left:-1px;background:#1d2330}
.meter.soft .spent{background:#f28e2b}.meter.over .spent{background:#e15759}
td.meter-cell{width:28%}tr.others td{color:#5b6475;font-style:italic}table.ranking td:first-child{white-space:nowrap}
table.budgets{table-layout:fixed}table.budgets th:first-child{width:18%}table.budgets th:nth-child(2){width:24%}
table.budgets td:first-child{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#refresh-status{font-size:12px;color:#cfd6e4;margin-left:auto}#refresh-status.error{color:#ffb4a9}
"""


@dataclass(frozen=True)
class Page:
    """Everything the page shows, already shaped into chart series by ``controlplane.admin.dashboard.routes``."""

    period: an.Period
    days: Sequence[date]
    cost_by: str
    filters: Mapping[str, str]
    query_days: str
    cost: Mapping[str, Mapping[date, float]]
    latency: tuple[Mapping[str, Mapping[date, float]], Mapping[str, str]]
    errors: Mapping[str, Mapping[date, float]]
    by_deployment: Sequence[an.DailyErrors]
    users: Sequence[an.UserTotal]
    tokens_by: str
    tokens: Sequence[an.TokenKinds]
    requests: int
    failed: int
    cost_pico: int | None
    extras: Extras
    refresh_s: int  # the page fetches its sections again this often (0: never)
    title: str = field(default="Tollway usage")


# What a token-kind group is called on the page: a route is the model a client asks for.
TOKEN_GROUP_NAMES = {"route": "model", "deployment": "deployment", "provider": "provider", "tenant": "tenant",
                     "project": "project"}


def _micro_money(micros: float) -> str:
    """Dollars of a chart value: the cost series are in micro-dollars (``dashboard.cost_series``)."""
    return money(micros * PICO_PER_MICRO)


def _ms(value: float) -> str:
    return f"{value:g} ms"


def _percent(value: float) -> str:
    return f"{value:g}%"


def _tokens(value: float) -> str:
    return f"{value:,.0f} tokens"


def _shell(title: str, body: str, refresh_s: int | None = None) -> str:
    """The page around ``body``; with ``refresh_s``, the script that refreshes it (``dashboard_script``)."""
    script = f'<script src="{SCRIPT_PATH}" defer></script>' if refresh_s is not None else ""
    refresh = f' data-refresh="{refresh_s}"' if refresh_s is not None else ""
    return (f'<!doctype html><html lang="en"{refresh}><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style>{script}'
            f"</head><body>{body}</body></html>")


def render_login(failed: bool) -> str:
    message = '<p class="error" id="login-error">That token is not valid.</p>' if failed else ""
    return _shell("Tollway dashboard: sign in", (
        '<div class="login"><h1>Tollway dashboard</h1><p>Sign in with the control plane\'s admin token.</p>'
        f'{message}<form method="post" action="/dashboard/login">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit">Sign in</button></form></div>'))


def _filters_form(page: Page) -> str:
    def option(value: str, label: str, current: str) -> str:
        selected = " selected" if value == current else ""
        return f'<option value="{escape(value)}"{selected}>{escape(label)}</option>'

    days = page.query_days or ("" if "since" in page.filters else "30")
    day_options = "".join(option(d, f"last {d} days", days) for d in ("7", "30", "90"))
    by_options = "".join(option(b, b, page.cost_by) for b in an.COST_DIMENSIONS)
    tokens_options = "".join(option(b, TOKEN_GROUP_NAMES.get(b, b), page.tokens_by) for b in an.TOKEN_DIMENSIONS)
    tenant = escape(page.filters.get("tenant", ""))
    return ('<form class="filters" method="get" action="/dashboard">'
            f'<label>Period<select name="days">{day_options}</select></label>'
            f'<label>Cost by<select name="cost_by">{by_options}</select></label>'
            f'<label>Tokens by<select name="tokens_by">{tokens_options}</select></label>'
            f'<label>Tenant<input name="tenant" value="{tenant}" placeholder="all"></label>'
            f'<input type="hidden" name="refresh" value="{page.refresh_s}">'
            '<button type="submit">Show</button></form>')


def _tiles(page: Page) -> str:
    rate = 100 * page.failed / page.requests if page.requests else 0.0
    cost = money(page.cost_pico) if page.cost_pico is not None else "-"
    until = page.period.until.date().isoformat() if page.period.until else "now"
    return ('<div class="tiles">'
            f'<div class="tile"><b id="total-cost">{cost}</b><span>cost</span></div>'
            f'<div class="tile"><b id="total-requests">{page.requests:,}</b><span>requests</span></div>'
            f'<div class="tile"><b id="total-error-rate">{rate:.2f}%</b><span>errors</span></div>'
            f'<div class="tile"><b>{page.period.since.date().isoformat()} to {until}</b><span>period (UTC)</span>'
            '</div></div>')


def _users_table(users: Sequence[an.UserTotal]) -> str:
    if not users:
        return charts.empty("Top users")
    rows = "".join(
        f"<tr><td>{escape(u.tenant)}</td><td>{escape(u.user)}</td><td class=n>{u.requests:,}</td>"
        f"<td class=n>{u.input_tokens:,}</td><td class=n>{u.output_tokens:,}</td>"
        f"<td class=n>{money(u.cost_pico)}</td></tr>" for u in users)
    return ('<table id="top-users"><thead><tr><th>Tenant</th><th>User</th><th class=n>Requests</th>'
            '<th class=n>Input tokens</th><th class=n>Output tokens</th><th class=n>Cost</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _tokens_section(page: Page) -> str:
    """The period's tokens of each kind per group: a figure of each group's mix, and the amounts in a table."""
    noun = TOKEN_GROUP_NAMES.get(page.tokens_by, page.tokens_by)
    label = f"Tokens by kind per {noun}"
    if not page.tokens:
        return f'<section id="tokens"><h2>{escape(label)}</h2>{charts.empty(label)}</section>'
    figure = charts.share_bars([(r.group or "(none)", r.parts()) for r in page.tokens], _tokens, label)
    rows = "".join(
        f"<tr><td>{escape(r.group or '(none)')}</td><td class=n>{r.requests:,}</td>"
        f"<td class=n>{r.input_tokens:,}</td><td class=n>{r.cached_input_tokens:,}</td>"
        f"<td class=n>{r.cache_write_tokens:,}</td><td class=n>{r.output_tokens:,}</td>"
        f"<td class=n>{r.reasoning_tokens:,}</td><td class=n>{money(r.cost_pico)}</td></tr>" for r in page.tokens)
    table = (f'<table id="token-kinds"><thead><tr><th>{escape(noun.capitalize())}</th><th class=n>Requests</th>'
             '<th class=n>Input tokens</th><th class=n>Cache read</th><th class=n>Cache write</th>'
             '<th class=n>Output tokens</th><th class=n>Reasoning</th><th class=n>Cost</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    return (f'<section id="tokens"><h2>{escape(label)} (share of each {escape(noun)}\'s tokens)</h2>'
            f"{figure}{charts.legend(list(an.TOKEN_PARTS))}"
            '<p class="note">Cache reads and writes are part of the input tokens, reasoning is part of the output '
            "tokens; each kind is billed at its own price.</p>"
            f"{table}</section>")


def _deployments_table(rows: Sequence[an.DailyErrors]) -> str:
    totals: dict[str, tuple[int, int]] = {}
    for r in rows:
        requests, errors = totals.get(r.group, (0, 0))
        totals[r.group] = (requests + r.requests, errors + r.errors)
    if not totals:
        return ""
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1][1] / max(kv[1][0], 1), kv[0]))
    body = "".join(
        f"<tr><td>{escape(name or '(none)')}</td><td class=n>{req:,}</td><td class=n>{err:,}</td>"
        f"<td class=n>{100 * err / req if req else 0:.2f}%</td></tr>" for name, (req, err) in ordered)
    return ('<table id="errors-by-deployment"><thead><tr><th>Deployment</th><th class=n>Requests</th>'
            f'<th class=n>Errors</th><th class=n>Error rate</th></tr></thead><tbody>{body}</tbody></table>')


def render_main(page: Page) -> str:
    """The sections inside ``<main>``: what the page shows first and what each refresh replaces."""
    cost_label = f"Cost per {page.cost_by} per day"
    cost_chart = charts.stacked_bars(page.days, page.cost, _micro_money, cost_label) if page.cost else \
        charts.empty(cost_label)
    latency, colors = page.latency
    dashed = frozenset(name for name in latency if name.endswith(" p95"))
    latency_chart = charts.line_chart(page.days, latency, _ms, "Latency per model", dashed, colors) if latency \
        else charts.empty("Latency per model")
    error_chart = charts.line_chart(page.days, page.errors, _percent, "Error rate per provider") if page.errors \
        else charts.empty("Error rate per provider")
    x = page.extras
    return (
        f'<section id="summary" class="wide"><h2>Summary</h2>{_tiles(page)}</section>'
        f"{sections.budgets_section(x)}{sections.health_section(x)}{sections.hourly_section(x)}"
        f'<section id="cost"><h2>{escape(cost_label)}</h2>{cost_chart}{charts.legend(list(page.cost))}</section>'
        '<section id="latency"><h2>Latency per model (p50 solid, p95 dashed; successful requests)</h2>'
        f'{latency_chart}{charts.legend(list(latency), colors, dashed)}</section>'
        '<section id="errors"><h2>Error rate per provider (status ≥ 400 or an error type)</h2>'
        f'{error_chart}{charts.legend(list(page.errors))}{_deployments_table(page.by_deployment)}</section>'
        f'{sections.top_section("top-keys", "Top keys by cost", "key", x.top_keys)}'
        f'{sections.top_section("top-projects", "Top projects by cost", "project", x.top_projects)}'
        f'<section id="users"><h2>Top users by cost</h2>{_users_table(page.users)}</section>'
        f"{_tokens_section(page)}")


def render_page(page: Page) -> str:
    status = (f'<span id="refresh-status">Refreshes every {page.refresh_s} s</span>' if page.refresh_s
              else '<span id="refresh-status">Refresh off</span>')
    body = (f'<header><h1>{escape(page.title)}</h1>{_filters_form(page)}{status}'
            f'<a href="/dashboard/logout">Sign out</a></header><main>{render_main(page)}</main>')
    return _shell(page.title, body, page.refresh_s)
