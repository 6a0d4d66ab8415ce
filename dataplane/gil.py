"""Threads that run Python code next to the event loop, and the loop's wait for the GIL.

A thread holding the GIL makes the loop wait up to the interpreter's switch interval (5 ms by default) each time
the loop wants it back: a latency tail for every request in flight. The data plane keeps Python work off its
threads where it can (the request log's thread only writes); where a thread must run some (preparing a snapshot,
reading a spool batch, encoding and sending a batch of spans), it runs it under ``finer_gil_switching``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

FINE_SWITCH_INTERVAL_S = 0.0005  # the loop waits at most about this long for the GIL


@contextmanager
def finer_gil_switching(interval_s: float = FINE_SWITCH_INTERVAL_S) -> Iterator[None]:
    """The interpreter's GIL switch interval at most ``interval_s`` for the duration (it is process-wide). The
    one found is restored afterwards unless something else changed it meanwhile; overlapping uses at worst end
    the finer interval early, never leave it behind."""
    before = sys.getswitchinterval()
    if before <= interval_s:
        yield
        return
    sys.setswitchinterval(interval_s)
    try:
        yield
    finally:
        if sys.getswitchinterval() == interval_s:
            sys.setswitchinterval(before)
