"""The stall probe's arithmetic: which answers count as before a change and which as during it."""

from __future__ import annotations

import pytest

from bench.harness.stall_probe import Latencies, Sample, summarize

pytestmark = pytest.mark.pure


def test_answers_are_placed_against_the_windows_they_overlap() -> None:
    windows = [(10.0, 10.5), (20.0, 20.2)]
    samples: list[Sample] = [
        (0, 8.0, 2.0, 200, "v1"),     # answered 2 s before the first window: neither
        (0, 9.5, 3.0, 200, "v1"),     # in the second before it: before
        (1, 9.99, 40.0, 200, "v1"),   # sent before, answered inside: during (held up by the swap)
        (0, 10.2, 250.0, 200, "v1"),  # sent inside: during, the worst of window 0
        (1, 10.4, 1.0, 503, "v2"),    # during, and not a 200
        (0, 10.6, 1.0, 200, "v2"),    # after the window: neither
        (1, 19.5, 5.0, 200, "v2"),    # before the second window
        (1, 20.1, 30.0, 200, "v3"),   # during the second window
    ]
    stall = summarize(samples, windows, targets=2, quiet_s=1.0)
    assert stall.before == Latencies(2, 4.0, 5.0, 5.0)
    assert (stall.during.count, stall.during.max_ms) == (4, 250.0)
    assert stall.worst_per_window == (250.0, 30.0)
    assert stall.worst_per_target == (250.0, 40.0)
    assert stall.failed == 1


def test_no_answers_give_zeros_not_an_error() -> None:
    stall = summarize([], [(1.0, 2.0)], targets=1)
    assert stall.before == stall.during == Latencies(0, 0.0, 0.0, 0.0) and stall.worst_per_window == (0.0,)
