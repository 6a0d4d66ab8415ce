"""The snapshot a data plane serves from, swapped atomically by reference.

``SnapshotHolder.install`` validates a snapshot whole and builds its runtime form; only when that succeeds is
the new runtime swapped in (one reference assignment). A request reads ``holder.runtime`` once and uses that
object to the end, so it never sees two versions. Task-safe on one event loop; no locks needed.
"""

from __future__ import annotations

from dataplane.runtime import InvalidSnapshot, Runtime
from tollway.pb import snapshot_pb2 as pb


class SnapshotHolder:
    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    @property
    def version(self) -> str:
        return self.runtime.version if self.runtime is not None else ""

    def install(self, snapshot: pb.Snapshot) -> str | None:
        """Swap in ``snapshot``; returns None on success, else the reason it was refused (the NACK error)."""
        try:
            runtime = Runtime.from_snapshot(snapshot)
        except InvalidSnapshot as exc:
            return str(exc)
        self.runtime = runtime
        return None
