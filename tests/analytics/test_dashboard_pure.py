"""The dashboard's pure parts: session values, chart markup, money and axis rounding. No event loop needed."""

from __future__ import annotations

import re
from datetime import date

import pytest

from controlplane.admin.dashboard import charts
from controlplane.admin.dashboard.page import money
from controlplane.admin.dashboard.routes import is_valid_session, session_value

pytestmark = pytest.mark.pure

TOKEN = "admin-token-for-tests"


@pytest.mark.parametrize(("value", "valid"), [
    (session_value(TOKEN, 2_000), True),
    (session_value(TOKEN, 1_000), False),                 # expired
    (session_value("another-token", 2_000), False),       # signed with another (e.g. the rotated-away) token
    (session_value(TOKEN, 2_000).replace("2000.", "3000."), False),  # expiry pushed out by hand
    ("", False), ("garbage", False), (TOKEN, False),      # the token itself is not a session
])
def test_session_values(value: str, valid: bool) -> None:
    assert is_valid_session(value, TOKEN, now=1_500) is valid


def test_session_value_does_not_contain_the_token() -> None:
    assert TOKEN not in session_value(TOKEN, 2_000)


@pytest.mark.parametrize(("micros", "text"), [
    (0, "$0.00"), (1_234, "$0.001234"), (10_000, "$0.01"), (4_500_000, "$4.50"), (1_234_567_890, "$1,234.57"),
])
def test_money(micros: int, text: str) -> None:
    assert money(micros * 1_000_000) == text  # amounts are pico-dollars


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.7, 1), (1, 1), (1.5, 2), (2.2, 2.5), (3, 5), (7, 10),
                                            (385, 500), (3_000_000, 5_000_000)])
def test_nice_max(value: float, top: float) -> None:
    assert charts.nice_max(value) == top


def test_chart_labels_are_escaped() -> None:
    day = date(2025, 1, 1)
    evil = '<script>alert(1)</script>"'
    svg = charts.stacked_bars([day], {evil: {day: 5.0}}, str, "cost")
    line = charts.line_chart([day], {evil: {day: 5.0}}, str, "latency")
    legend = charts.legend([evil])
    for markup in (svg, line, legend):
        assert "<script>" not in markup and "&lt;script&gt;" in markup


def test_stacked_bars_stack_in_series_order() -> None:
    d1, d2 = date(2025, 1, 1), date(2025, 1, 2)
    svg = charts.stacked_bars([d1, d2], {"a": {d1: 3.0}, "b": {d1: 1.0, d2: 4.0}}, str, "cost")
    assert svg.count("<rect") == 3  # no mark for a missing (zero) value
    assert svg.index('data-series="a" data-day="2025-01-01"') < svg.index('data-series="b" data-day="2025-01-01"')


def test_lines_break_at_missing_days() -> None:
    days = [date(2025, 1, d) for d in (1, 2, 3, 4, 5)]
    svg = charts.line_chart(days, {"m": {days[0]: 1.0, days[1]: 2.0, days[3]: 3.0, days[4]: 4.0}}, str, "x")
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4


def test_no_days_is_a_message_not_an_empty_chart() -> None:
    assert "No data" in charts.line_chart([], {}, str, "Latency")


def test_share_bars_split_each_group_by_its_parts() -> None:
    svg = charts.share_bars([("claude", {"input": 30.0, "cache read": 0.0, "reasoning": 10.0}),
                             ("idle", {"input": 0.0, "reasoning": 0.0})], str, "tokens")
    marks = re.findall(r'<rect [^>]*data-group="([^"]+)" data-series="([^"]+)" data-value="([^"]+)"'
                       r'><title>([^<]*)</title>', svg)
    # No mark for a zero part, no bar for a group without tokens; the title gives the share.
    assert marks == [("claude", "input", "30", "claude input: 30.0 (75.0%)"),
                     ("claude", "reasoning", "10", "claude reasoning: 10.0 (25.0%)")]
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([^"]+)"', svg)]
    assert widths[0] == pytest.approx(3 * widths[1])  # 75% and 25% of the same bar
    assert "No data" in charts.share_bars([("idle", {"input": 0.0})], str, "tokens")


def test_share_bars_keep_big_counts_exact_and_labels_escaped() -> None:
    evil = '<script>alert(1)</script>'
    svg = charts.share_bars([(evil, {"input": 123_456_789.0})], str, "tokens")
    assert 'data-value="123456789"' in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
