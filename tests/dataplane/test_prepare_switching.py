"""Preparing a snapshot off the loop hands the GIL back to the loop within a millisecond, not CPython's 5 ms.

``SnapshotHolder.prepare`` runs the runtime build and the companions under ``finer_gil_switching``; the interval
is process-wide, so what matters as much is that it is put back afterwards, also when the snapshot is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from dataplane.gil import FINE_SWITCH_INTERVAL_S, finer_gil_switching
from dataplane.snapshot.holder import SnapshotHolder
from tests.dataplane.snapshots import build_snapshot
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

DEFAULT = 0.005


@pytest.fixture(autouse=True)
def default_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(DEFAULT)
    yield
    sys.setswitchinterval(before)


class Recorder:
    """A companion that notes the switch interval its ``prepare`` ran under."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        self.seen.append(sys.getswitchinterval())
        return lambda: None


def test_prepare_runs_with_a_finer_switch_interval_and_puts_the_old_one_back() -> None:
    recorder = Recorder()
    holder = SnapshotHolder([recorder])
    snap, _ = build_snapshot()
    assert not isinstance(holder.prepare(snap), str)
    assert recorder.seen == [FINE_SWITCH_INTERVAL_S] and FINE_SWITCH_INTERVAL_S <= 0.001
    assert sys.getswitchinterval() == DEFAULT

    snap.keys[0].tenant = "nobody"  # refused: the interval is restored all the same
    assert "does not exist" in str(holder.prepare(snap))
    assert sys.getswitchinterval() == DEFAULT


def test_an_interval_already_finer_or_changed_meanwhile_is_left_alone() -> None:
    sys.setswitchinterval(0.0002)
    with finer_gil_switching(0.001):
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    assert sys.getswitchinterval() == pytest.approx(0.0002)

    sys.setswitchinterval(DEFAULT)
    with finer_gil_switching(0.001):
        sys.setswitchinterval(0.002)  # someone else's choice, made while it ran
    assert sys.getswitchinterval() == pytest.approx(0.002)
