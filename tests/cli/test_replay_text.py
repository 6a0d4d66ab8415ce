"""The replay options and rendering of ``gatectl plan --replay`` (``cli.render.replay_text``): pure, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from cli.errors import UsageError
from cli.render.replay_text import failed_checks, parse_checks, parse_window, progress_bar, render_markdown

pytestmark = pytest.mark.pure

REPORT: dict[str, Any] = {
    "window": {"sinceMs": 0, "untilMs": 86_400_000, "days": 1.0}, "seed": 0, "requests": 10,
    "reproduced": {"requests": 10, "matching": 10, "mismatches": []},
    "changes": {"refused": 3, "allowed": 0, "moved": 2},
    "refused": [{"tenant": "ci", "key": "ci|bot", "reason": "rate limit", "code": "rate_limit_exceeded",
                 "requests": 3, "perDay": 3.0}],
    "allowed": [],
    "moved": [{"tenant": "search", "from": "big", "to": "small", "fromProvider": "dear", "toProvider": "cheap",
               "requests": 2, "perDay": 2.0, "costDeltaPico": -2_000_000, "costDeltaPerDayUsd": "-$0.000002"}],
    "cost": {"currentPico": 5_000_000, "proposedPico": 3_000_000, "deltaPico": -2_000_000,
             "deltaPerDayUsd": "-$0.000002"},
}


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604_800), ("12h", 43_200), (" 30m ", 1_800), ("2w", 1_209_600),
                                               ("90s", 90), ("366d", 31_622_400)])
def test_a_window_is_a_duration(text: str, seconds: int) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize(("text", "says"), [("0d", "expected a duration"), ("7", "expected a duration"),
                                            ("7y", "expected a duration"), ("-1d", "expected a duration"),
                                            ("367d", "at most 366 days")])
def test_a_bad_window_names_the_option(text: str, says: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_window(text)
    assert str(raised.value).startswith("--replay: ") and says in str(raised.value)


@pytest.mark.parametrize(("checks", "holding"), [
    (["refusals>0"], ["refusals=3 (>0)"]),
    (["refusals>3", "moved>=2"], ["moved=2 (>=2)"]),
    (["changes==5"], ["changes=5 (==5)"]),
    (["allowed>0", "moved<2"], []),
    (["cost<0"], ["cost=-0.000002 (<0)"]),  # USD per day: the proposal saves
    (["cost>0"], []),
])
def test_fail_on_conditions_hold_on_the_report(checks: list[str], holding: list[str]) -> None:
    assert failed_checks(REPORT, parse_checks(checks)) == holding


@pytest.mark.parametrize("text", ["refusal>0", "refusals>", "refusals=0", "refusals>x", ">0"])
def test_a_bad_fail_on_names_the_option_and_the_metrics(text: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_checks([text])
    assert "--fail-on" in str(raised.value) and "refusals, moved" in str(raised.value) and text in str(raised.value)


def test_the_progress_bar_fills_with_the_requests_replayed() -> None:
    assert progress_bar(0, 1_000_000) == f"[{'.' * 30}]   0% 0/1,000,000 requests"
    assert progress_bar(600_000, 1_000_000) == f"[{'#' * 18}{'.' * 12}]  60% 600,000/1,000,000 requests"
    assert progress_bar(26, 26) == f"[{'#' * 30}] 100% 26/26 requests"
    assert progress_bar(0, 0) == f"[{'#' * 30}] 100% 0/0 requests"  # nothing recorded: nothing left to do


def test_markdown_escapes_table_cells() -> None:
    text = render_markdown(REPORT)
    assert "| ci | ci\\|bot | rate limit | 3 | 3.0/day |" in text
    assert "| search | big (dear) | small (cheap) | 2 | 2.0/day | -$0.000002/day |" in text
