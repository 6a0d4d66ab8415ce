"""The data plane's append-only usage spool: records are written here on the request path, shipped from here.

A directory holds::

    LOCK               flock'ed while a process has the spool open: one owner at a time
    spool.json         {"node_id", "epoch", "acked"}: replaced whole (written aside, fsynced, renamed)
    <n>.seg            records, each framed as MAGIC u16 | LENGTH u32 | CRC32 u32 | UsageRecord bytes
    <n>.idx            the batches cut from segment <n>: SEQUENCE u64 | START u64 | END u64 | COUNT u32 | CRC32 u32

Durability. ``append`` is one ``os.write`` on an ``O_APPEND`` descriptor: once it returns, the record is in the
kernel, so killing the process (even SIGKILL) loses nothing; only a machine crash can lose the unsynced tail.
A torn or zeroed tail is caught by the magic and checksum when the spool is opened and cut off there.

Batch boundaries are decided once and written down, never recomputed. A batch is cut (by the shipper, not the
request path) from the records after the previous cut, within one segment; before it is handed out the
segment and the new index entry are fsynced. Replaying after a restart therefore yields the same
(epoch, sequence) for the same records, which is what lets the control plane drop a replayed batch; a batch
that was never cut was never sent, so cutting it afresh is safe. The ack watermark lives in ``spool.json``;
a segment is deleted once it is sealed, fully cut and every batch in it is acknowledged (``.seg`` before
``.idx``, so a crash in between leaves an orphan index, never records that would be cut again).

Threads: ``append`` runs on the event loop and only holds a short lock; ``next_batch``/``pending_batches``/
``ack`` do blocking I/O (reads, fsync) and belong in a worker thread.

Errors (the data plane's tree, see ``dataplane.errors``)::

    DataPlaneError
    └── SpoolError     the spool cannot be opened: held by another process, or its directory is unusable

``append`` never raises for I/O failures (a full disk must not fail a request): it counts them in ``lost``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dataplane.errors import DataPlaneError
from dataplane.record.usage_batch import Batch, batch_of
from tollway.durable import fsync_dir, write_atomically
from tollway.pb import usage_pb2 as upb

log = logging.getLogger(__name__)

FRAME = struct.Struct("<HII")  # magic, payload length, crc32(payload)
MAGIC = 0x5457  # "TW": a zero-filled tail (what a crash can leave) never parses as a record
MAX_RECORD_BYTES = 1 << 20
MAX_BATCH_BYTES = 2 * MAX_RECORD_BYTES  # keeps a batch far below gRPC's 4 MiB message limit; one record always fits
ENTRY = struct.Struct("<QQQII")  # sequence, start, end, count, crc32 of the preceding 28 bytes
ENTRY_BODY = struct.Struct("<QQQI")
STATE_FILE = "spool.json"
LOCK_FILE = "LOCK"
DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024


class SpoolError(DataPlaneError):
    """The spool directory cannot be opened (locked by another process, unreadable state)."""


@dataclass(frozen=True, slots=True)
class _Cut:
    """One batch as written in an ``.idx`` file: records in bytes [start, end) of its segment."""

    sequence: int
    start: int
    end: int
    count: int


@dataclass(slots=True)
class _Segment:
    """What the spool knows of one segment file; mutated only under ``UsageSpool._lock``."""

    number: int
    size: int  # bytes of whole records
    records: int
    cuts: list[_Cut] = field(default_factory=list)
    sealed: bool = True

    @property
    def cut_end(self) -> int:
        return self.cuts[-1].end if self.cuts else 0


def frame(record: upb.UsageRecord) -> bytes:
    payload = record.SerializeToString()
    return FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def read_frames(f: BinaryIO, limit: int, max_records: int) -> tuple[list[bytes], int]:
    """Whole, intact frames from ``f``'s position up to ``limit`` (at most ``max_records``), and where they end.
    The range is read in one piece (a batch is at most ``MAX_BATCH_BYTES``), then cut into its frames."""
    start = f.tell()
    data = f.read(max(0, limit - start))
    payloads: list[bytes] = []
    at = 0
    while len(payloads) < max_records and at + FRAME.size <= len(data):
        magic, length, crc = FRAME.unpack_from(data, at)
        end = at + FRAME.size + length
        if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = data[at + FRAME.size:end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        at = end
    return payloads, start + at


class UsageSpool:
    """An open spool directory. Open with ``UsageSpool.open``; ``close`` when done (releases the directory lock).

    ``node_id`` and ``epoch`` are those the spool was created with: batches keep carrying them after a restart
    under another node id, so the control plane's (node_id, epoch, sequence) key stays stable for replays.
    """

    def __init__(self, directory: Path, lock_fd: int, node_id: str, epoch: str, acked: int,
                 segments: list[_Segment], segment_bytes: int) -> None:
        self._dir = directory
        self._lock_fd = lock_fd
        self.node_id = node_id
        self.epoch = epoch
        self._acked = acked
        self._segment_bytes = segment_bytes
        self._segments = {s.number: s for s in segments}
        self._next_number = max((s.number for s in segments), default=0) + 1
        last_cut = max((c.sequence for s in segments for c in s.cuts), default=0)
        self._next_sequence = max(acked, last_cut) + 1
        self._pending = sum(s.records for s in segments) - sum(
            c.count for s in segments for c in s.cuts if c.sequence <= acked)
        self._active: _Segment | None = None
        self._fd = -1
        self._closed = False
        self._lost = 0
        self._watchers: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # segment table and the active descriptor; held briefly
        self._io_lock = threading.Lock()  # serializes the shipper-side operations (cut, read, ack, close)

    @classmethod
    def open(cls, directory: str | os.PathLike[str], node_id: str, *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> UsageSpool:
        """Open (or create) the spool in ``directory``: recover its state and cut off any torn tail."""
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise SpoolError(f"cannot open the usage spool: {e.strerror}") from e
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(lock_fd)
            raise SpoolError("the usage spool is in use by another process") from e
        try:
            state = _read_state(path)
            if state is None:
                for idx in path.glob("*.idx"):  # their sequences belong to an epoch nobody remembers
                    idx.unlink()
                state = {"node_id": node_id, "epoch": secrets.token_hex(16), "acked": 0}
                _write_state(path, state)
            elif state["node_id"] != node_id:
                log.info("usage spool keeps node id %s for its batches (this process is %s)",
                         state["node_id"], node_id)
            segments = _recover(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            os.close(lock_fd)
            raise SpoolError(f"cannot recover the usage spool: {e}") from e
        spool = cls(path, lock_fd, str(state["node_id"]), str(state["epoch"]), int(state["acked"]), segments,
                    segment_bytes)
        spool._delete_done()
        return spool

    @property
    def acked(self) -> int:
        """The highest sequence the control plane acknowledged (every batch up to it is stored)."""
        return self._acked

    @property
    def backlog(self) -> int:
        """Records appended but not yet acknowledged."""
        return self._pending

    @property
    def lost(self) -> int:
        """Records ``append`` could not write (disk full, spool closed), since open."""
        return self._lost

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (cheap, non-blocking, same thread) after every append; returns the unsubscribe."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def append(self, record: upb.UsageRecord) -> None:
        """Write one record to the active segment; on return it survives the death of this process."""
        data = frame(record)
        with self._lock:
            if len(data) > FRAME.size + MAX_RECORD_BYTES:
                self._lose("record too large")
                return
            if self._closed:
                self._lose("the spool is closed")
                return
            try:
                segment = self._active or self._start_segment()
                written = os.write(self._fd, data)
            except OSError as e:
                self._lose(e.strerror or "write failed")
                return
            if written != len(data):  # a short write (disk full): take the partial frame back
                self._lose("short write")
                try:
                    os.ftruncate(self._fd, segment.size)
                except OSError:
                    self._seal()  # the tail is torn; open() would cut it off, so never write after it
                return
            segment.size += written
            segment.records += 1
            self._pending += 1
            if segment.size >= self._segment_bytes:
                self._seal()
        for callback in self._watchers:
            callback()

    def _lose(self, why: str) -> None:
        self._lost += 1
        log.error("usage record lost: %s (%d lost since start)", why, self._lost)

    def _start_segment(self) -> _Segment:
        number = self._next_number
        self._fd = os.open(self._dir / f"{number:012d}.seg",
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._next_number += 1
        segment = _Segment(number, 0, 0, sealed=False)
        self._segments[number] = segment
        self._active = segment
        return segment

    def _seal(self) -> None:
        if self._active is not None:
            os.close(self._fd)
            self._fd = -1
            self._active.sealed = True
            self._active = None

    def pending_batches(self, max_records: int = 500) -> Iterator[Batch]:
        """Every unacknowledged batch, in sequence order, cutting new ones from unbatched records. Blocking."""
        after = self._acked
        while (batch := self.next_batch(after, max_records)) is not None:
            yield batch
            after = batch.sequence

    def next_batch(self, after: int, max_records: int = 500) -> Batch | None:
        """The first batch with a sequence above ``after``, cut now if need be; None if nothing is pending.

        Blocking (reads, and fsync when cutting); call from a worker thread.
        """
        with self._io_lock:
            found = self._find(after)
            if found is None:
                found = self._cut(max_records)
                if found is None:
                    return None
            segment, cut = found
            with open(self._dir / f"{segment:012d}.seg", "rb") as f:
                f.seek(cut.start)
                payloads, _ = read_frames(f, cut.end, cut.count)
            return batch_of(self.node_id, self.epoch, cut.sequence, payloads)

    def _find(self, after: int) -> tuple[int, _Cut] | None:
        with self._lock:
            for segment in self._segments.values():
                for cut in segment.cuts:
                    if cut.sequence > after:
                        return segment.number, cut
        return None

    def _cut(self, max_records: int) -> tuple[int, _Cut] | None:
        with self._lock:
            target = next((s for s in self._segments.values() if s.cut_end < s.size), None)
            if target is None:
                return None
            number, start, limit, sequence = target.number, target.cut_end, target.size, self._next_sequence
        seg_path = self._dir / f"{number:012d}.seg"
        with open(seg_path, "rb") as f:
            f.seek(start)
            payloads, end = read_frames(f, min(limit, start + MAX_BATCH_BYTES), max_records)
            if not payloads:  # only disk corruption gets here: give up the rest of the segment
                log.error("usage spool segment %d is corrupt after byte %d; dropping the rest", number, start)
                with self._lock:
                    if target is self._active:
                        self._seal()
                    self._pending -= target.records - sum(c.count for c in target.cuts)
                    target.size, target.records = start, sum(c.count for c in target.cuts)
                return self._cut(max_records)
            os.fsync(f.fileno())  # the batch's records must be on disk before its boundary is
        cut = _Cut(sequence, start, end, len(payloads))
        idx_path = self._dir / f"{number:012d}.idx"
        is_new = not idx_path.exists()
        fd = os.open(idx_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            body = ENTRY_BODY.pack(cut.sequence, cut.start, cut.end, cut.count)
            os.write(fd, body + struct.pack("<I", zlib.crc32(body)))
            os.fsync(fd)
        finally:
            os.close(fd)
        if is_new:
            fsync_dir(self._dir)
        with self._lock:
            target.cuts.append(cut)
            self._next_sequence = sequence + 1
        return number, cut

    def ack(self, epoch: str, sequence: int) -> bool:
        """Record that every batch up to ``sequence`` is stored; delete what that frees. Blocking.

        False (and nothing changes) for another epoch, an old sequence, or one never handed out.
        """
        with self._io_lock:
            if epoch != self.epoch or sequence <= self._acked or sequence >= self._next_sequence:
                return False
            _write_state(self._dir, {"node_id": self.node_id, "epoch": self.epoch, "acked": sequence})
            with self._lock:
                self._pending -= sum(c.count for s in self._segments.values() for c in s.cuts
                                     if self._acked < c.sequence <= sequence)
                self._acked = sequence
            self._delete_done()
            return True

    def _delete_done(self) -> None:
        with self._lock:
            done = [s for s in self._segments.values()
                    if s.sealed and s.cut_end == s.size and all(c.sequence <= self._acked for c in s.cuts)]
            for segment in done:
                del self._segments[segment.number]
        for segment in done:
            (self._dir / f"{segment.number:012d}.seg").unlink(missing_ok=True)
            fsync_dir(self._dir)  # the records are gone for good before their index is
            (self._dir / f"{segment.number:012d}.idx").unlink(missing_ok=True)

    def close(self) -> None:
        with self._io_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            self._seal()
            os.close(self._lock_fd)  # releases the flock

    def __enter__(self) -> UsageSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        text = (directory / STATE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    state = json.loads(text)
    if not isinstance(state, dict) or not state.get("epoch") or not isinstance(state.get("acked"), int):
        raise ValueError(f"{STATE_FILE} is malformed")
    return state


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    write_atomically(directory / STATE_FILE, json.dumps(state).encode())


def _recover(directory: Path) -> list[_Segment]:
    """Every segment on disk, sealed, with its valid cuts; torn tails (of records or of cuts) cut off."""
    segments = []
    numbers = sorted(int(p.stem) for p in directory.glob("*.seg") if p.stem.isdigit())
    for idx in directory.glob("*.idx"):
        if idx.stem.isdigit() and int(idx.stem) not in numbers:
            idx.unlink()  # its segment was deleted after being acknowledged
    for number in numbers:
        seg_path = directory / f"{number:012d}.seg"
        cuts = _read_cuts(directory / f"{number:012d}.idx", seg_path.stat().st_size)
        start = cuts[-1].end if cuts else 0
        with open(seg_path, "rb") as f:
            f.seek(start)
            payloads, end = read_frames(f, seg_path.stat().st_size, 1 << 62)
        if end < seg_path.stat().st_size:
            log.warning("usage spool segment %d: dropping a torn tail of %d bytes",
                        number, seg_path.stat().st_size - end)
            os.truncate(seg_path, end)
        segments.append(_Segment(number, end, sum(c.count for c in cuts) + len(payloads), cuts))
    return segments


def _read_cuts(path: Path, segment_size: int) -> list[_Cut]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    cuts: list[_Cut] = []
    for offset in range(0, len(data) - ENTRY.size + 1, ENTRY.size):
        sequence, start, end, count, crc = ENTRY.unpack_from(data, offset)
        body = data[offset:offset + ENTRY_BODY.size]
        expected_start = cuts[-1].end if cuts else 0
        if (zlib.crc32(body) != crc or start != expected_start or end > segment_size
                or (cuts and sequence <= cuts[-1].sequence)):
            break
        cuts.append(_Cut(sequence, start, end, count))
    if len(cuts) * ENTRY.size != len(data):
        log.warning("usage spool index %s: dropping a torn tail", path.name)
        os.truncate(path, len(cuts) * ENTRY.size)
    return cuts
