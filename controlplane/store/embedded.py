"""The embedded store: etcd's contract on one machine, for development and single-node control planes.

State lives in memory (key -> value and mod_revision) with a global revision counter and a bounded history of
recent revisions, so watches can start in the past. Given a directory, the store is durable:

- ``wal.jsonl``: one JSON line per write transaction (and per compaction), appended and fsynced *before* the
  change becomes visible, so a transaction either survives a crash whole or not at all. A line torn by a crash
  mid-append is dropped on replay and cut off the file.
- ``checkpoint.json``: the whole state at some revision, written to a temporary file, fsynced and renamed into
  place every ``checkpoint_every`` log lines; the log then starts over. Log lines at or below the checkpoint's
  revision (a crash between the rename and the truncation) are skipped on replay.
- ``LOCK``: held with ``flock`` for the life of the store, so a second process cannot open the same directory.

History survives only in memory: after a reopen, watches can start at the first revision the log still holds.

Errors (from ``controlplane.store.base``)::

    StoreError          directory in use, corrupt files, invalid transaction, I/O failure
    ├── StoreUnavailable  the store was closed
    └── Compacted         a watch asked for a revision older than the history kept
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import fcntl
import os
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import orjson

from controlplane.store.base import (
    Compacted,
    Compare,
    Event,
    KeyValue,
    Range,
    StoreError,
    StoreUnavailable,
    TxnResult,
    check_txn,
)
from tollway.durable import fsync_dir, write_atomically

LOCK_FILE = "LOCK"
LOG_FILE = "wal.jsonl"
CHECKPOINT_FILE = "checkpoint.json"


@dataclass(frozen=True)
class _Revision:
    """The events one write transaction produced, all at ``revision``."""

    revision: int
    events: tuple[Event, ...]


@dataclass
class _State:
    """What replaying a directory yields; also the shape of a fresh store."""

    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    revision: int = 0
    history: list[_Revision] = field(default_factory=list)
    history_start: int = 1  # the oldest revision a watch may start at


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class _Journal:
    """The files of one store directory. Blocking I/O: called through ``asyncio.to_thread`` by the store.

    Not task-safe by itself: the store calls it only while holding its write lock.
    """

    def __init__(self, directory: Path, lock_fd: int, log_fd: int, entries: int) -> None:
        self._dir = directory
        self._lock_fd = lock_fd
        self._log_fd = log_fd
        self.entries = entries  # log lines since the last checkpoint
        self.broken: str | None = None  # set when the log may hold a partial line we could not cut off

    @classmethod
    def open(cls, directory: Path) -> tuple[_Journal, _State]:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreError(f"cannot open store directory {directory}: {e.strerror}") from e
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(lock_fd)
            raise StoreError(
                f"store directory {directory} is in use by another process (pid {holder}); "
                "only one control plane may open an embedded store"
            ) from None
        try:
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
            state, good_size = _replay(directory)
            log_fd = os.open(directory / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if os.fstat(log_fd).st_size != good_size:
                os.ftruncate(log_fd, good_size)  # cut a torn last line off
                os.fsync(log_fd)
            fsync_dir(directory)
        except BaseException:
            os.close(lock_fd)  # releases the flock
            raise
        entries = len(state.history)
        return cls(directory, lock_fd, log_fd, entries), state

    def append(self, record: dict[str, Any]) -> None:
        if self.broken:
            raise StoreError(f"store log is unusable after an earlier I/O error: {self.broken}")
        line = orjson.dumps(record) + b"\n"
        start = os.lseek(self._log_fd, 0, os.SEEK_END)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._log_fd, view) :]
            os.fsync(self._log_fd)
        except OSError as e:
            try:
                os.ftruncate(self._log_fd, start)
            except OSError as e2:
                self.broken = e2.strerror or str(e2)
            raise StoreError(f"cannot write store log: {e.strerror}") from e
        self.entries += 1

    def checkpoint(self, state: _State) -> None:
        """Write the whole state, then start the log over. ``state.history`` is not written."""
        body = {
            "revision": state.revision,
            "history_start": state.history_start,
            "data": [[k, _b64(v), rev] for k, (v, rev) in state.data.items()],
        }
        try:
            write_atomically(self._dir / CHECKPOINT_FILE, orjson.dumps(body))
            os.ftruncate(self._log_fd, 0)
            os.fsync(self._log_fd)
        except OSError as e:
            # The old checkpoint plus the full log still describe the state; appending goes on.
            raise StoreError(f"cannot write store checkpoint: {e.strerror}") from e
        self.entries = 0

    def close(self) -> None:
        os.close(self._log_fd)
        os.close(self._lock_fd)


def _replay(directory: Path) -> tuple[_State, int]:
    """Load the checkpoint and apply the log; returns the state and the length of the log's valid prefix."""
    state = _State()
    with contextlib.suppress(FileNotFoundError):
        raw = (directory / CHECKPOINT_FILE).read_bytes()
        try:
            body = orjson.loads(raw)
            state.revision = int(body["revision"])
            state.history_start = int(body["history_start"])
            state.data = {k: (_unb64(v), int(rev)) for k, v, rev in body["data"]}
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"store checkpoint {directory / CHECKPOINT_FILE} is corrupt: {e}") from e
    state.history_start = max(state.history_start, state.revision + 1)
    try:
        log = (directory / LOG_FILE).read_bytes()
    except FileNotFoundError:
        return state, 0
    lines = log.split(b"\n")
    offset = 0
    for i, line in enumerate(lines):
        terminated = i < len(lines) - 1
        record = _parse_record(line) if terminated else None
        if record is None:
            if line and any(_parse_record(rest) is not None for rest in lines[i + 1 :]):
                raise StoreError(f"store log {directory / LOG_FILE} is corrupt at byte {offset}")
            return state, offset  # a torn tail (or nothing): drop it
        _apply_record(state, record, directory)
        offset += len(line) + 1
    return state, offset


def _parse_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and ("r" in record or "c" in record) else None


def _apply_record(state: _State, record: dict[str, Any], directory: Path) -> None:
    if "c" in record:
        _drop_history(state, int(record["c"]))
        return
    revision = int(record["r"])
    if revision <= state.revision:
        return  # already in the checkpoint
    if revision != state.revision + 1:
        raise StoreError(f"store log {directory / LOG_FILE} skips from revision {state.revision} to {revision}")
    events = [Event("put", k, _unb64(v), revision) for k, v in record.get("p", ())]
    events += [Event("delete", k, b"", revision) for k in record.get("d", ())]
    _apply_events(state, _Revision(revision, tuple(events)))


def _apply_events(state: _State, entry: _Revision) -> None:
    for e in entry.events:
        if e.type == "put":
            state.data[e.key] = (e.value, e.mod_revision)
        else:
            state.data.pop(e.key, None)
    state.revision = entry.revision
    state.history.append(entry)


def _drop_history(state: _State, revision: int) -> None:
    if revision <= state.history_start:
        return
    state.history = [h for h in state.history if h.revision >= revision]
    state.history_start = revision


class EmbeddedStore:
    """A ``Store`` kept in this process; task-safe within one event loop.

    Writers are serialized by one lock and each waits for its own fsync; readers never wait. Watchers read the
    shared history through their own cursor, so a slow watcher delays nobody: once it falls further behind than
    ``history_limit`` revisions it gets ``Compacted`` and must relist.
    """

    def __init__(self, state: _State, journal: _Journal | None, history_limit: int, checkpoint_every: int) -> None:
        self._data = state.data
        self._revision = state.revision
        self._history: deque[_Revision] = deque(state.history[-history_limit:])
        self._history_start = self._history[0].revision if self._history else state.history_start
        self._journal = journal
        self._history_limit = history_limit
        self._checkpoint_every = checkpoint_every
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Event()  # replaced on every change; set to wake the watchers of the old one
        self._closed = False

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        history_limit: int = 10_000,
        checkpoint_every: int = 10_000,
    ) -> Self:
        """Open (creating if needed) the store in ``directory``, or a memory-only one when it is ``None``."""
        if history_limit < 1 or checkpoint_every < 1:
            raise ValueError("history_limit and checkpoint_every must be positive")
        if directory is None:
            return cls(_State(), None, history_limit, checkpoint_every)
        journal, state = await asyncio.to_thread(_Journal.open, Path(directory))
        return cls(state, journal, history_limit, checkpoint_every)

    async def get(self, key: str) -> KeyValue | None:
        self._check_open()
        found = self._data.get(key)
        return KeyValue(key, found[0], found[1]) if found else None

    async def list(self, prefix: str) -> Range:
        self._check_open()
        items = [KeyValue(k, v, rev) for k, (v, rev) in self._data.items() if k.startswith(prefix)]
        items.sort(key=lambda kv: kv.key)
        return Range(items=tuple(items), revision=self._revision)

    async def txn(
        self,
        compares: Sequence[Compare],
        puts: Sequence[tuple[str, bytes]] = (),
        deletes: Sequence[str] = (),
    ) -> TxnResult:
        self._check_open()
        check_txn(puts, deletes)
        # Shielded: once the record may be on disk, memory must follow even if the caller is cancelled.
        return await asyncio.shield(self._commit(tuple(compares), tuple(puts), tuple(deletes)))

    async def _commit(
        self, compares: tuple[Compare, ...], puts: tuple[tuple[str, bytes], ...], deletes: tuple[str, ...]
    ) -> TxnResult:
        async with self._write_lock:
            self._check_open()
            if any(self._mod_revision(c.key) != c.mod_revision for c in compares):
                return TxnResult(succeeded=False, revision=self._revision)
            deleted = [k for k in deletes if k in self._data]
            if not puts and not deleted:
                return TxnResult(succeeded=True, revision=self._revision)  # like etcd: no change, no revision
            revision = self._revision + 1
            if self._journal:
                record = {"r": revision, "p": [[k, _b64(v)] for k, v in puts], "d": deleted}
                await asyncio.to_thread(self._journal.append, record)
            events = [Event("put", k, v, revision) for k, v in puts]
            events += [Event("delete", k, b"", revision) for k in deleted]
            self._apply(_Revision(revision, tuple(events)))
            if self._journal and self._journal.entries >= self._checkpoint_every:
                state = _State(data=dict(self._data), revision=self._revision, history_start=self._history_start)
                await asyncio.to_thread(self._journal.checkpoint, state)
            return TxnResult(succeeded=True, revision=revision)

    def _mod_revision(self, key: str) -> int:
        found = self._data.get(key)
        return found[1] if found else 0

    def _apply(self, entry: _Revision) -> None:
        for e in entry.events:
            if e.type == "put":
                self._data[e.key] = (e.value, e.mod_revision)
            else:
                del self._data[e.key]
        self._revision = entry.revision
        self._history.append(entry)
        if len(self._history) > self._history_limit:
            self._history.popleft()
            self._history_start = self._history[0].revision
        self._wake_watchers()

    def _wake_watchers(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[builtins.list[Event]]:
        """See ``Store.watch``; ``start_revision`` <= 0 means "from the next revision", as in etcd."""
        self._check_open()
        cursor = start_revision if start_revision > 0 else self._revision + 1
        while True:
            self._check_open()
            if cursor < self._history_start:
                raise Compacted(self._history_start)
            if cursor > self._revision:
                await self._changed.wait()
                continue
            entry = self._history[cursor - self._history_start]
            cursor += 1
            batch = [e for e in entry.events if e.key.startswith(prefix)]
            if batch:
                yield batch

    async def compact(self, revision: int) -> None:
        self._check_open()
        async with self._write_lock:
            self._check_open()
            if revision > self._revision:
                raise StoreError(f"cannot compact at revision {revision}: the store is at {self._revision}")
            if revision <= self._history_start:
                return  # already compacted that far: compaction is idempotent
            if self._journal:
                await asyncio.to_thread(self._journal.append, {"c": revision})
            while self._history and self._history[0].revision < revision:
                self._history.popleft()
            self._history_start = revision
            self._wake_watchers()  # watchers behind the new start must learn they are compacted

    async def close(self) -> None:
        """Release the directory; pending watches then raise ``StoreUnavailable``. Idempotent."""
        async with self._write_lock:
            if self._closed:
                return
            self._closed = True
            if self._journal:
                await asyncio.to_thread(self._journal.close)
            self._wake_watchers()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the embedded store is closed")
