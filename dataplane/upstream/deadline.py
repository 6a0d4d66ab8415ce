"""``Deadline``: ``asyncio.timeout_at`` for the request path, as a plain ``with`` block.

The request path bounds every upstream attempt and every read of a stream; ``asyncio.timeout`` costs two
coroutines and a state machine per use (4-5 % of a request's CPU at saturation, measured with ``bench.overhead
--profile``). This is its core and nothing else: at ``when`` (a ``loop.time()``) the current task is cancelled,
and the block's ``CancelledError`` becomes ``TimeoutError`` unless someone else cancelled the task too
(``Task.uncancel``, as ``asyncio.timeout`` does). Not reschedulable, not reusable. Its timer is an ``Alarm``
(``dataplane.upstream.alarms``): it goes off at most one tick (5 ms) after ``when``.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from dataplane.upstream.alarms import Alarms


class Deadline:
    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, alarms: Alarms, when: float) -> None:
        task = asyncio.current_task(alarms.loop)
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        self._handle = alarms.at(when, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._handle.cancel()
        if self.expired and self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
            raise TimeoutError from exc
