"""The snapshot a data plane serves from, swapped atomically by reference.

``SnapshotHolder.install`` validates a snapshot whole: it builds the runtime form and asks every companion
(the rate limiter's and the budget book's views of the same snapshot) to prepare its own; only when all of them
succeed is the new runtime swapped in (one reference assignment) and the companions adopt theirs. Otherwise the
snapshot is refused whole (the NACK) and everything keeps the old one. A request reads ``holder.runtime`` once and
uses that object to the end, so it never sees two versions. ``install`` may run on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dataplane.snapshot.runtime import InvalidSnapshot, Runtime
from tollway.pb import snapshot_pb2 as pb


class Companion(Protocol):
    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        """Validate what this companion derives from ``snapshot`` (raise ``InvalidSnapshot``), and return the
        function that adopts it."""
        ...


class SnapshotHolder:
    def __init__(self, companions: Sequence[Companion] = ()) -> None:
        self.runtime: Runtime | None = None
        self._companions = tuple(companions)

    @property
    def version(self) -> str:
        return self.runtime.version if self.runtime is not None else ""

    def install(self, snapshot: pb.Snapshot) -> str | None:
        """Swap in ``snapshot``; returns None on success, else the reason it was refused (the NACK error)."""
        try:
            runtime = Runtime.from_snapshot(snapshot)
            adopters = [c.prepare(snapshot) for c in self._companions]
        except InvalidSnapshot as exc:
            return str(exc)
        self.runtime = runtime
        for adopt in adopters:
            adopt()
        return None
