"""The relay floor (bench/relay_floor.py) measures round trips that include the upstream's delay, both ways."""

from __future__ import annotations

import os

import pytest

from bench import relay_floor
from bench.harness.overhead_report import floor_note


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the relay floor places its processes on CPUs 0 and 1")
def test_both_paths_wait_for_the_delayed_upstream_and_the_note_reports_the_difference() -> None:
    affinity = os.sched_getaffinity(0)
    floor = relay_floor.measure(requests=10, delay_s=(0.002, 0.003))
    assert os.sched_getaffinity(0) == affinity  # the caller's CPUs are given back
    assert 2.0 <= floor.direct_p50_ms < 50 and 2.0 <= floor.relayed_p50_ms < 50
    assert floor.added_p50_ms == pytest.approx(floor.relayed_p50_ms - floor.direct_p50_ms)
    note = floor_note({"delay_ms": "2\u20133", "relay_floor": {"added_p50_ms": 0.21, "added_p99_ms": 0.15}})
    assert "adds p50 **0.21 ms**, p99 0.15 ms" in "".join(note)
    assert floor_note({"delay_ms": "2\u20133"}) == []  # a saved run from before the floor renders without it
