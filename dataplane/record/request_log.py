"""The structured request log: one JSON line per request, written off the request path.

The request path calls ``RequestLog.emit(entry)``, which renders the entry into its JSON line (content hashing or
redaction included) and buffers it: no lock taken, no I/O, no thread woken. A timer on the loop (every
``flush_interval_s``, or a full batch sooner) hands the buffered lines, joined, to one writer thread, whose only
work is the write syscall (which releases the GIL): no Python thread competes with the loop for the interpreter,
which cost the request path its tail (a GIL hand-over waits up to the 5 ms switch interval). When ``max_queue``
lines wait to be written the entry is dropped and counted (``stats.dropped``); the request never waits for the log.
Lines go to a ``Sink``: a size-rotated file or a stream such as stdout.

Lines are built from the same facts as the usage record (``dataplane.record.usage_record.usage_fields``), so
the log and the usage data never disagree. Prompt and response content appear only as the tenant's logging policy allows
(``dataplane.core.content``); keys appear only as their id. The format is documented in ``docs/logging.md``.

Threading contract: ``emit`` and the timer run on one event loop thread; the writer thread only writes the bytes it
is handed, in order (a one-thread executor). The two share the count of unwritten lines (under a lock, once per
batch) and counters each side writes alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import orjson

from dataplane.core.accounting import Outcome
from dataplane.core.content import ContentKey, kept_content
from dataplane.errors import ApiError
from dataplane.record.usage_record import usage_fields
from dataplane.snapshot.runtime import NO_CONTENT, ContentPolicy, Key

log = logging.getLogger(__name__)


@dataclass(unsafe_hash=True)
class Served:
    """A request that was admitted (it has an ``Outcome``), with what the log may need of its content.

    ``response`` is the assistant message the client received (``{"role", "content", "tool_calls"?}``), or None;
    it is read only when ``policy`` keeps content. ``upstream_s`` is the time spent waiting on upstreams (from
    the first attempt's send to the end of the upstream body), when the proxy measured it. ``fields``: the
    outcome's usage record fields when the caller has them already (``usage_fields``, the spool's record's), so
    they are found once per request.
    """

    outcome: Final[Outcome]
    policy: Final[ContentPolicy]
    response: Final[Mapping[str, Any] | None]
    upstream_s: Final[float | None]
    fields: Final[dict[str, Any] | None]

    def __init__(self, outcome: Outcome, policy: ContentPolicy = NO_CONTENT, response: Mapping[str, Any] | None = None,
                 upstream_s: float | None = None, fields: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.policy = policy
        self.response = response
        self.upstream_s = upstream_s
        self.fields = fields


@dataclass(unsafe_hash=True)
class Refused:
    """A request the gateway answered itself with an error (bad key, invalid body, rate limit, no route...)."""

    request_id: Final[str]
    started: Final[float]  # unix seconds
    duration_s: Final[float]
    error: Final[ApiError]
    snapshot: Final[str]
    key: Final[Key | None]
    model: Final[str]
    user: Final[str]

    def __init__(self, request_id: str, started: float, duration_s: float, error: ApiError, snapshot: str = "",
                 key: Key | None = None, model: str = "", user: str = "") -> None:
        self.request_id = request_id
        self.started = started
        self.duration_s = duration_s
        self.error = error
        self.snapshot = snapshot
        self.key = key
        self.model = model
        self.user = user


LogEntry = Served | Refused


_second: tuple[int, str] = (-1, "")


def _iso(ts: float) -> str:
    global _second
    ms = int(ts * 1000)
    second = ms // 1000
    if _second[0] != second:  # formatted once a second: most lines of a second share it
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{ms % 1000:03d}Z"


def _ms(seconds: float | None) -> float | None:
    # Milliseconds to the microsecond: whole microseconds, then /1000 (``round(x, 3)`` costs five times as much)
    return None if seconds is None else round(seconds * 1_000_000) / 1000


def log_entry(outcome: Outcome, region: str, node_id: str, content: Mapping[str, Any] | None,
              *, content_mode: str = "none", upstream_s: float | None = None,
              fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The log line of an admitted request, as a dict (see ``docs/logging.md``); ``content`` from ``kept_content``.

    Built from the usage record fields of the same outcome (``usage_fields``; a field left out has its default)
    so identifiers, tokens, cost, status and error type agree with the spooled record.
    """
    rec = fields if fields is not None else usage_fields(outcome, region, node_id)
    upstream_ms = _ms(upstream_s)
    total_ms = _ms(outcome.duration_s)
    line: dict[str, Any] = {
        "ts": _iso(outcome.started),
        "request_id": rec.get("request_id", ""),
        "tenant": rec.get("tenant", ""),
        "project": rec.get("project", ""),
        "user": rec.get("user", ""),
        "key_id": rec.get("key_id", ""),
        "model": outcome.plan.request.model,
        "route": rec.get("route", ""),
        "deployment": rec.get("deployment", ""),
        "provider": rec.get("provider", ""),
        "region": rec.get("region", ""),
        "node_id": rec.get("node_id", ""),
        "snapshot_version": rec.get("snapshot_version", ""),
        "stream": rec.get("stream", False),
        "status": rec.get("status", 0),
        "error_type": rec.get("error_type", ""),
        "attempts": rec.get("attempts", 0),
        "input_tokens": rec.get("input_tokens", 0),
        "cached_tokens": rec.get("cached_input_tokens", 0),
        "output_tokens": rec.get("output_tokens", 0),
        "cache_write_tokens": rec.get("cache_write_tokens", 0) + rec.get("cache_write_1h_tokens", 0),
        "reasoning_tokens": rec.get("reasoning_tokens", 0),
        "cost_micros": rec.get("cost_micros", 0),
        "cost_pico": rec.get("cost_pico", 0),
        "usage_source": rec.get("usage_source", "") or "upstream",
        "latency_ms": total_ms,
        "ttfb_ms": _ms(outcome.first_byte_s),
        "upstream_ms": upstream_ms,
        "overhead_ms": (None if upstream_ms is None or total_ms is None
                        else round(max(total_ms - upstream_ms, 0.0), 3)),
        "content_mode": content_mode if content is not None else "none",
    }
    if content is not None:
        line["prompt"] = content.get("prompt")
        line["response"] = content.get("response")
    return line


def refusal_entry(refusal: Refused, region: str, node_id: str) -> dict[str, Any]:
    """The log line of a request refused by the gateway: same fields, no upstream, no tokens, no content."""
    key = refusal.key
    return {
        "ts": _iso(refusal.started),
        "request_id": refusal.request_id,
        "tenant": key.tenant.name if key else "",
        "project": key.project if key else "",
        "user": refusal.user,
        "key_id": key.id if key else "",
        "model": refusal.model,
        "route": "",
        "deployment": "",
        "provider": "",
        "region": region,
        "node_id": node_id,
        "snapshot_version": refusal.snapshot,
        "stream": False,
        "status": refusal.error.status,
        "error_type": refusal.error.code or refusal.error.type,
        "attempts": 0,
        "input_tokens": 0,
        "cached_tokens": 0,
        "output_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_micros": 0,
        "cost_pico": 0,
        "usage_source": "upstream",
        "latency_ms": _ms(refusal.duration_s),
        "ttfb_ms": None,
        "upstream_ms": None,
        "overhead_ms": _ms(refusal.duration_s),
        "content_mode": "none",
    }


def render(entry: LogEntry, region: str, node_id: str, key: ContentKey) -> dict[str, Any]:
    """The line of any entry: applies the content policy (hash, redact, keep or drop) to a served request."""
    if isinstance(entry, Refused):
        return refusal_entry(entry, region, node_id)
    messages = entry.outcome.plan.request.payload.get("messages")
    content = kept_content(entry.policy, key, messages, entry.response)
    return log_entry(entry.outcome, region, node_id, content, content_mode=entry.policy.mode,
                     upstream_s=entry.upstream_s, fields=entry.fields)


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """Writes each batch to a binary stream (stdout by default) and flushes it. Does not close the stream."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class RotatingFileSink:
    """Appends to ``path`` (mode 0600: lines may hold content); past ``max_bytes`` renames it to ``path.1``,
    shifting older files up to ``path.<backups>`` and deleting the oldest. A batch is never split across files.
    """

    def __init__(self, path: Path, max_bytes: int = 100 * 1024 * 1024, backups: int = 5) -> None:
        self.path = path
        self._max = max_bytes
        self._backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self._backups > 0:
            for i in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._size > 0 and self._size + len(data) > self._max:
            self._rotate()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    def close(self) -> None:
        os.close(self._fd)


def open_sink(target: str, max_bytes: int = 100 * 1024 * 1024, backups: int = 5) -> Sink:
    """``-`` (or ``stdout``) for standard output, else a file path (rotated by size)."""
    if target in ("-", "stdout"):
        return StreamSink()
    return RotatingFileSink(Path(target), max_bytes, backups)


@dataclass
class LogStats:
    """Counters; each is written by one side only (``emitted``/``dropped`` by ``emit``, the rest by the writer)."""

    emitted: int = 0
    dropped: int = 0
    written: int = 0
    failed: int = 0  # entries that could not be rendered or written (a bug or a full disk), logged once each


@dataclass
class RequestLog:
    """The request log of one data plane. ``start`` once (on the event loop), ``await stop()`` once; not
    restartable."""

    sink: Sink
    region: str
    node_id: str
    content_key: ContentKey = field(repr=False)
    max_queue: int = 10_000
    batch_max: int = 512
    flush_interval_s: float = 0.2
    stats: LogStats = field(default_factory=LogStats)
    # The lines not yet handed to the writer, each ending in a newline, appended to one buffer: keeping each
    # line's bytes until the batch went out cost 4-5 us a line (orjson's outputs, freed 512 at a time, let glibc
    # give the memory back to the kernel, and the next lines faulted it in again: 2.5 page faults a request;
    # 0.9 us a line appended here, against 4.7 us kept as a list of bytes)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _buffered: int = 0  # lines in ``_buffer``
    _unwritten: int = 0  # lines handed to the writer and not yet written (the writer decrements)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: bool = False
    _loop: asyncio.AbstractEventLoop | None = None
    _timer: asyncio.TimerHandle | None = None
    _writer: ThreadPoolExecutor | None = None

    def emit(self, entry: LogEntry) -> None:
        """Render ``entry`` into a line and buffer it; never blocks, never wakes a thread. Drops (and counts) it
        when ``max_queue`` lines are waiting to be written or the log stopped."""
        if self._stopping or self._buffered + self._unwritten >= self.max_queue:
            self.stats.dropped += 1
            return
        try:
            line = orjson.dumps(render(entry, self.region, self.node_id, self.content_key),
                                option=orjson.OPT_APPEND_NEWLINE)
        except Exception as exc:  # one bad entry must not stop the log (nor the request)
            self.stats.failed += 1
            # The type only: a message or traceback could quote the content the policy withholds.
            log.error("request log: could not render an entry (%s)", type(exc).__name__)
            return
        self._buffer += line
        self._buffered += 1
        self.stats.emitted += 1
        if self._buffered >= self.batch_max:
            self._flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.flush_interval_s, self._flush)

    def start(self) -> None:
        if self._writer is not None:
            raise RuntimeError("request log already started")
        self._loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"request-log-{self.node_id}")

    async def stop(self) -> None:
        """Write every entry emitted so far, then close the sink. A second call does nothing."""
        if self._stopping:
            return
        self._stopping = True
        self._flush()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.shutdown, True)
        self.sink.close()

    def _flush(self) -> None:
        """Hand the buffered lines to the writer thread as one write (on the loop, by the timer or a full batch)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffered:
            return
        data, lines = bytes(self._buffer), self._buffered
        self._buffer.clear()
        self._buffered = 0
        with self._lock:
            self._unwritten += lines
        if self._writer is None:  # never started (stop without start): write here
            self._write(data, lines)
        else:
            self._writer.submit(self._write, data, lines)

    def _write(self, data: bytes, lines: int) -> None:
        """On the writer thread: the syscall, which releases the GIL while the loop goes on."""
        try:
            self.sink.write(data)
            self.stats.written += lines
        except OSError as exc:
            self.stats.failed += lines
            log.error("request log: write failed (%s); %d lines lost", exc.strerror, lines)
        finally:
            with self._lock:
                self._unwritten -= lines
