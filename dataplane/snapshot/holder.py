"""The snapshot a data plane serves from: prepared whole anywhere, adopted in one step on the event loop.

``SnapshotHolder.prepare(snapshot)`` validates a snapshot whole: it builds the runtime form and asks every
companion (the rate limiter's and the budget book's views of the same snapshot) to prepare its own. It touches
nothing the request path reads, so it may run on a worker thread (building a large snapshot's runtime is the
slow part). It answers a ``Prepared`` value, or the reason the snapshot is refused (the NACK) as a string.

``SnapshotHolder.adopt(prepared)`` must run on the event loop: it swaps the runtime in (one reference
assignment) and has every companion adopt its part, with no await in between, so no request can see one
snapshot's runtime with another's limits or budgets, and the companions (``BudgetBook`` is not thread-safe)
are only ever mutated on the loop. A request reads ``holder.runtime`` once and uses that object to the end.

``install(snapshot)`` is both in one call, for callers already on the loop (start-up, tests).

Preparing off the loop still shares the GIL with it. While ``prepare`` runs, the interpreter's switch interval is
0.5 ms instead of 5 (``dataplane.gil.finer_gil_switching``; the figures below were measured at 1 ms), so the loop
waits at most about that long each time it wants the GIL back, and the runtime's bulk operations over the keys
go a few thousand at a time (``key_table._STEP``) so that no single C call holds it much longer. For 100,000 keys
the loop's longest wait for the GIL while a runtime builds fell from 14-19 ms to about 6, and requests answered
while a swap is taken in from a median of 4-8 ms to 2-3 and a p99 of 40-250 ms to 25-45
(``bench.snapshot_propagation``, which measures what requests see during a swap).

Adopting freezes what is alive (``gc.freeze``): a snapshot's runtime (for 100,000 keys, millions of objects) and
the process's start-up objects leave the collector's view, so a full collection scans only what requests created
since, instead of stalling the loop 90-130 ms a few times a minute under load (measured by ``bench.overload``).
A runtime has no reference cycles, so one replaced later is still freed by its reference count.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dataplane.gil import finer_gil_switching
from dataplane.snapshot.runtime import InvalidSnapshot, Runtime
from tollway.pb import snapshot_pb2 as pb


class Companion(Protocol):
    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        """Validate what this companion derives from ``snapshot`` (raise ``InvalidSnapshot``), and return the
        function that adopts it (called on the event loop, together with the runtime swap)."""
        ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated snapshot's runtime and its companions' adopters, ready for ``adopt``. Immutable."""

    runtime: Runtime
    adopters: tuple[Callable[[], None], ...]


class SnapshotHolder:
    """Owned by the event loop: only ``adopt`` (and ``install``) write ``runtime``, and only on the loop."""

    def __init__(self, companions: Sequence[Companion] = ()) -> None:
        self.runtime: Runtime | None = None
        self._companions = tuple(companions)

    @property
    def version(self) -> str:
        return self.runtime.version if self.runtime is not None else ""

    def prepare(self, snapshot: pb.Snapshot) -> Prepared | str:
        """Validate ``snapshot`` whole (any thread); the ``Prepared`` value, or why it is refused."""
        try:
            with finer_gil_switching():
                runtime = Runtime.from_snapshot(snapshot)
                adopters = tuple(c.prepare(snapshot) for c in self._companions)
        except InvalidSnapshot as exc:
            return str(exc)
        return Prepared(runtime, adopters)

    def adopt(self, prepared: Prepared) -> None:
        """Swap in a prepared snapshot with its companions, in one step (on the event loop)."""
        self.runtime = prepared.runtime
        for adopt in prepared.adopters:
            adopt()
        gc.freeze()

    def install(self, snapshot: pb.Snapshot) -> str | None:
        """``prepare`` then ``adopt``; None on success, else the reason it was refused (the NACK error)."""
        prepared = self.prepare(snapshot)
        if isinstance(prepared, str):
            return prepared
        self.adopt(prepared)
        return None
