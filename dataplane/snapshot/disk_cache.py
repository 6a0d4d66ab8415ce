"""The last good snapshot on disk, so a data plane restarted while the control plane is away still serves.

File format: one line ``tollway-snapshot v1 <sha256 hex of the payload>`` then the serialized ``Snapshot``.
The checksum catches a damaged file (the atomic write already rules out a torn one); a file that fails it, or
does not parse, is ignored as if absent: the data plane then waits for the control plane instead of serving a
guess. Writes go to a temporary file that is fsynced and renamed over the old one.

Not task-safe by itself: its one writer is the discovery client, one snapshot at a time. Blocking I/O: call it
through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from google.protobuf.message import DecodeError

from tollway.durable import write_atomically
from tollway.pb import snapshot_pb2 as pb

log = logging.getLogger(__name__)

FILE_NAME = "snapshot.pb"
_MAGIC = b"tollway-snapshot v1 "


class SnapshotCache:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def load(self, region: str) -> pb.Snapshot | None:
        """The persisted snapshot of ``region``; None when absent, damaged or of another region (logged)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the persisted snapshot: %s", exc)
            return None
        header, _, payload = data.partition(b"\n")
        if not header.startswith(_MAGIC) or header[len(_MAGIC):] != hashlib.sha256(payload).hexdigest().encode():
            log.warning("ignoring the persisted snapshot: damaged (checksum mismatch)")
            return None
        snapshot = pb.Snapshot()
        try:
            snapshot.ParseFromString(payload)
        except DecodeError as exc:
            log.warning("ignoring the persisted snapshot: %s", exc)
            return None
        if snapshot.region != region:
            log.warning("ignoring the persisted snapshot: it is for region %r, this data plane serves %r",
                        snapshot.region, region)
            return None
        return snapshot

    def save(self, snapshot: pb.Snapshot) -> None:
        """Replace the persisted snapshot atomically: readers see the old file or the new one, never a mix."""
        payload = snapshot.SerializeToString(deterministic=True)
        data = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, data)
