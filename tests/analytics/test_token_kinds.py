"""Every token kind billed apart (cache reads, cache writes, reasoning) as an operator sees it: ``gatectl usage``
(a subprocess, as a table, CSV and JSON), the admin API's JSON and the dashboard's HTML, over a real control plane
whose usage database holds ``known_events`` (per route over the three days: gpt-4o 12 requests, 12,000 input
tokens of which 3,000 cache reads, 1,200 output, $6.00; claude 6 requests, 12,000 input of which 7,200 cache reads
and 2,400 cache writes, 1,200 output of which 300 reasoning, $3.00).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

from controlplane.server import ControlPlane
from tests.analytics.conftest import today
from tests.analytics.test_analytics_http import BEARER, get
from tests.analytics.test_report_cli import gatectl

GPT = {"requests": 12, "inputTokens": 12_000, "cachedInputTokens": 3_000, "cacheWriteTokens": 0,
       "outputTokens": 1_200, "reasoningTokens": 0, "costPico": str(6 * 10**12), "costUsd": "6.00"}
CLAUDE = {"requests": 6, "inputTokens": 12_000, "cachedInputTokens": 7_200, "cacheWriteTokens": 2_400,
          "outputTokens": 1_200, "reasoningTokens": 300, "costPico": str(3 * 10**12), "costUsd": "3.00"}


def since() -> str:
    """The first day of the events: ``gatectl usage`` defaults to this month, which may start after it."""
    return (today() - timedelta(days=2)).date().isoformat()


def table_rows(out: str) -> list[list[str]]:
    """A kubectl-style table as cells: columns are three spaces apart, a cell or header holds single spaces only."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


def subset(row: dict[str, object], keys: dict[str, object]) -> dict[str, object]:
    return {k: row.get(k) for k in keys}


async def test_gatectl_usage_shows_every_token_kind(analytics_cp: ControlPlane, tmp_path: Path) -> None:
    (code, out, err), as_csv, as_json = await asyncio.gather(
        gatectl(analytics_cp, tmp_path, "usage", "--by", "route", "--since", since()),
        gatectl(analytics_cp, tmp_path, "usage", "--by", "tenant", "--since", since(), "-o", "csv"),
        gatectl(analytics_cp, tmp_path, "usage", "--by", "provider", "--since", since(), "-o", "json"))
    assert code == 0, err
    assert table_rows(out) == [
        ["ROUTE", "REQUESTS", "INPUT TOKENS", "CACHE READ", "CACHE WRITE", "OUTPUT TOKENS", "REASONING", "COST USD"],
        ["gpt-4o", "12", "12000", "3000", "0", "1200", "0", "6.00"],  # a kind a model never used is a zero
        ["claude", "6", "12000", "7200", "2400", "1200", "300", "3.00"],
    ]

    code, out, err = as_csv
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"tenant": "acme", "requests": "12", "input_tokens": "12000", "cache_read": "3000", "cache_write": "0",
         "output_tokens": "1200", "reasoning": "0", "cost_usd": "6.00"},
        {"tenant": "globex", "requests": "6", "input_tokens": "12000", "cache_read": "7200", "cache_write": "2400",
         "output_tokens": "1200", "reasoning": "300", "cost_usd": "3.00"},
    ]

    code, out, err = as_json
    assert code == 0, err
    rows = json.loads(out)["rows"]  # the admin API's answer, as is
    assert [r["group"] for r in rows] == [{"provider": "openai"}, {"provider": "anthropic"}]
    assert [subset(r, GPT) for r in rows] == [GPT, CLAUDE]


async def test_usage_api_filters_the_token_kinds_too(analytics_cp: ControlPlane) -> None:
    d2 = today().date().isoformat()
    status, body, _ = await get(analytics_cp, f"/admin/v1/usage?by=user&tenant=globex&since={d2}", BEARER)
    assert status == 200, body
    # Today globex had one request with a user (carol) and one without; each wrote 400 and reasoned 50 tokens.
    assert [(r["group"], r["cachedInputTokens"], r["cacheWriteTokens"], r["reasoningTokens"]) for r in body["rows"]] \
        == [({"user": ""}, 1_200, 400, 50), ({"user": "carol"}, 1_200, 400, 50)]


async def test_analytics_tokens_report(analytics_cp: ControlPlane) -> None:
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/tokens?by=route", BEARER)
    assert status == 200, body
    assert body["by"] == "route"
    assert [r["route"] for r in body["rows"]] == ["gpt-4o", "claude"]
    assert [subset(r, GPT) for r in body["rows"]] == [GPT, CLAUDE]
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/tokens?by=project&tag=batch", BEARER)
    assert [(r["project"], r["cacheWriteTokens"]) for r in body["rows"]] == [("globex/api", 2_400)]
    status, body, _ = await get(analytics_cp, "/admin/v1/analytics/tokens?by=user", BEARER)
    assert status == 400 and "by" in body["error"]["message"]


def token_table(page: str) -> list[str]:
    found = re.search(r'<table id="token-kinds">.*?</table>', page, re.S)
    assert found, "no token-kind table on the page"
    return re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", found.group(0))


def share_marks(page: str) -> dict[tuple[str, str], int]:
    """(group, kind) -> tokens of the token-kind figure's marks."""
    return {(g, k): int(v) for g, k, v in re.findall(
        r'<rect [^>]*class="share" data-group="([^"]+)" data-series="([^"]+)" data-value="([^"]+)"', page)}


async def test_dashboard_shows_the_token_kinds_per_model_and_per_tenant(analytics_cp: ControlPlane) -> None:
    status, page, _ = await get(analytics_cp, "/dashboard", BEARER)
    assert status == 200
    assert token_table(page) == [
        "Model", "Requests", "Input tokens", "Cache read", "Cache write", "Output tokens", "Reasoning", "Cost",
        "gpt-4o", "12", "12,000", "3,000", "0", "1,200", "0", "$6.00",
        "claude", "6", "12,000", "7,200", "2,400", "1,200", "300", "$3.00",
    ]
    # The figure splits each model's tokens into parts that add up: uncached input, cache reads, cache writes,
    # output that is not reasoning, reasoning (no mark for a part that is zero).
    assert share_marks(page) == {
        ("gpt-4o", "uncached input"): 9_000, ("gpt-4o", "cache read"): 3_000,
        ("gpt-4o", "non-reasoning output"): 1_200,
        ("claude", "uncached input"): 2_400, ("claude", "cache read"): 7_200, ("claude", "cache write"): 2_400,
        ("claude", "non-reasoning output"): 900, ("claude", "reasoning"): 300,
    }

    status, page, _ = await get(analytics_cp, "/dashboard?tokens_by=tenant", BEARER)
    assert status == 200
    cells = token_table(page)
    assert cells[0] == "Tenant" and cells[8:16] == ["acme", "12", "12,000", "3,000", "0", "1,200", "0", "$6.00"]
    assert '<option value="tenant" selected>tenant</option>' in page
    status, body, _ = await get(analytics_cp, "/dashboard?tokens_by=user", BEARER)
    assert status == 400 and "tokens_by" in body["error"]["message"]


async def test_a_period_without_usage_says_so(analytics_cp: ControlPlane) -> None:
    status, page, _ = await get(analytics_cp, "/dashboard?since=2020-01-01&until=2020-01-02", BEARER)
    assert status == 200
    assert 'id="token-kinds"' not in page and "No data for tokens by kind per model" in page
