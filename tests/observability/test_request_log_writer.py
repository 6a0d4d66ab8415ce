"""The request log: line contents, the off-path writer (file, rotation, stdout), overflow, flush on stop."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataplane.core.accounting import Outcome, Usage
from dataplane.core.attribution import Attribution
from dataplane.core.content import ContentKey
from dataplane.core.decide import RoutePlan
from dataplane.core.validate import HubRequest, validate_chat
from dataplane.errors import ApiError
from dataplane.record.request_log import (
    Refused,
    RequestLog,
    RotatingFileSink,
    Served,
    StreamSink,
    log_entry,
    open_sink,
    refusal_entry,
    render,
)
from dataplane.snapshot.runtime import ContentPolicy, Runtime
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot
from tollway.keyformat import hash_key

KEY = ContentKey(b"content-hash-key-for-tests-0001")
PROMPT = "Summarise the contract for jane@example.com, card 4111 1111 1111 1111"
ANSWER = "Sure: the contract of jane@example.com says nothing about cards."
FIELDS = [
    "ts", "request_id", "tenant", "project", "user", "key_id", "model", "route", "deployment", "provider", "region",
    "node_id", "snapshot_version", "stream", "status", "error_type", "attempts", "input_tokens", "cached_tokens",
    "output_tokens", "cache_write_tokens", "reasoning_tokens", "cost_micros", "cost_pico", "usage_source",
    "latency_ms", "ttfb_ms", "upstream_ms",
    "overhead_ms", "content_mode",
]


def runtime_and_keys() -> tuple[Runtime, Keys]:
    snap, keys = build_snapshot()
    return Runtime.from_snapshot(snap, {CREDENTIAL_ENV: CREDENTIAL}), keys


def make_outcome(request_id: str = "req-1", prompt: str = PROMPT, status: int = 200) -> Outcome:
    runtime, keys = runtime_and_keys()
    payload = {"model": "chat", "user": "u-42", "messages": [{"role": "user", "content": prompt}]}
    request = validate_chat(payload, len(orjson.dumps(payload)))
    assert isinstance(request, HubRequest)
    key = runtime.keys[hash_key(keys.acme_all)]
    route = runtime.routes["chat"]
    dep = route.candidates[0].deployment
    plan = RoutePlan(key=key, route=route, request=request, candidates=(dep,))
    return Outcome(request_id=request_id, snapshot=runtime.version, plan=plan, deployment=dep, attempts=2,
                   status=status, usage=Usage(prompt_tokens=120, completion_tokens=30, cached_tokens=20),
                   cost_pico=57_000_000, started=1_700_000_000.25, first_byte_s=0.0405, duration_s=0.25,
                   attribution=Attribution(user="u-42"))


def served(policy: str = "none", request_id: str = "req-1") -> Served:
    return Served(make_outcome(request_id), ContentPolicy(policy),  # type: ignore[arg-type]
                  {"role": "assistant", "content": ANSWER}, upstream_s=0.2375)


def test_log_entry_has_every_field_from_the_outcome() -> None:
    line = log_entry(make_outcome(), "eu", "node-a", None, upstream_s=0.2375)
    assert list(line) == FIELDS
    assert line == {
        "ts": "2023-11-14T22:13:20.250Z", "request_id": "req-1", "tenant": "acme", "project": "web",
        "user": "u-42", "key_id": "acme-all", "model": "chat", "route": "chat", "deployment": "gpt-eu",
        "provider": "up-eu", "region": "eu", "node_id": "node-a", "snapshot_version": "v-test-1", "stream": False,
        "status": 200, "error_type": "", "attempts": 2, "input_tokens": 120, "cached_tokens": 20,
        "output_tokens": 30, "cache_write_tokens": 0, "reasoning_tokens": 0,
        "cost_micros": 57, "cost_pico": 57_000_000, "usage_source": "upstream",
        "latency_ms": 250.0, "ttfb_ms": 40.5, "upstream_ms": 237.5,
        "overhead_ms": 12.5, "content_mode": "none",
    }


def test_log_entry_error_and_unknown_upstream_time() -> None:
    line = log_entry(make_outcome(status=502), "eu", "n", None)
    assert line["status"] == 502 and line["error_type"] == "upstream_error"
    assert line["upstream_ms"] is None and line["overhead_ms"] is None


@pytest.mark.parametrize("mode", ["none", "hashed", "redacted", "full"])
def test_render_content_only_as_the_mode_allows(mode: str) -> None:
    line = render(served(mode), "eu", "n", KEY)
    text = orjson.dumps(line)
    assert line["content_mode"] == mode
    if mode == "none":
        assert "prompt" not in line and "response" not in line
    if mode in ("none", "hashed", "redacted"):
        assert b"jane@example.com" not in text and b"4111" not in text
    if mode == "hashed":
        assert line["prompt"][0]["role"] == "user" and len(line["prompt"][0]["hmac"]) == 64
        assert render(served(mode, "req-2"), "eu", "n", KEY)["prompt"] == line["prompt"]
    if mode == "redacted":
        assert line["prompt"][0]["content"] == "Summarise the contract for [REDACTED:EMAIL], card [REDACTED:CARD]"
        assert line["response"]["content"].startswith("Sure: the contract of [REDACTED:EMAIL]")
    if mode == "full":
        assert line["prompt"][0]["content"] == PROMPT and line["response"]["content"] == ANSWER


def test_refusal_entry() -> None:
    runtime, keys = runtime_and_keys()
    key = runtime.keys[hash_key(keys.acme_mock)]
    err = ApiError(429, "rate limited", "rate_limit_error", "rate_limit_exceeded")
    line = refusal_entry(Refused("req-9", 1_700_000_000.0, 0.0004, err, "v-test-1", key, "chat", "u-1"), "eu", "n")
    assert list(line) == FIELDS
    assert (line["tenant"], line["key_id"], line["status"], line["error_type"]) == ("acme", "acme-mock", 429,
                                                                                   "rate_limit_exceeded")
    assert line["attempts"] == 0 and line["overhead_ms"] == 0.4 and line["upstream_ms"] is None
    anonymous = refusal_entry(Refused("r", 0.0, 0.001, ApiError(401, "bad key", "invalid_request_error")), "eu", "n")
    assert anonymous["key_id"] == "" and anonymous["error_type"] == "invalid_request_error"


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines()]


async def test_entries_reach_the_file_in_order(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "requests.jsonl"
    rlog = RequestLog(open_sink(str(path)), "eu", "node-a", KEY, flush_interval_s=0.02)
    rlog.start()
    entry = served("redacted")
    for i in range(50):
        rlog.emit(Served(make_outcome(f"r{i:02d}"), entry.policy, entry.response))
    for _ in range(500):  # the thread writes while we wait, up to 5 s
        if rlog.stats.written == 50:
            break
        await asyncio.sleep(0.01)
    assert rlog.stats.written == 50  # before stop: the writer flushes on its own
    await rlog.stop()
    lines = read_lines(path)
    assert [line["request_id"] for line in lines] == [f"r{i:02d}" for i in range(50)]
    assert path.stat().st_mode & 0o777 == 0o600


async def test_stop_flushes_what_the_writer_has_not_written(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(open_sink(str(path)), "eu", "n", KEY, flush_interval_s=3600)
    rlog.start()
    for i in range(3):
        rlog.emit(served(request_id=f"r{i}"))
    await asyncio.sleep(0.05)
    assert path.read_bytes() == b""  # the writer sleeps for an hour unless woken
    await rlog.stop()
    assert [line["request_id"] for line in read_lines(path)] == ["r0", "r1", "r2"]
    rlog.emit(served())  # after stop: dropped and counted, not an error
    assert rlog.stats.dropped == 1


class StuckSink:
    """A sink whose writes wait until released: stands for a slow disk or a blocked stdout pipe."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.release.wait(10)
        self.data += data

    def close(self) -> None:
        pass


async def test_overflow_drops_and_counts_without_blocking() -> None:
    sink = StuckSink()
    rlog = RequestLog(sink, "eu", "n", KEY, max_queue=100, batch_max=10, flush_interval_s=0.01)
    rlog.start()
    entry = served()
    started = time.monotonic()
    for _ in range(5000):
        rlog.emit(entry)
    emitting = time.monotonic() - started
    assert rlog.stats.dropped > 0
    assert rlog.stats.emitted + rlog.stats.dropped == 5000
    assert rlog.stats.emitted <= 100 + 10 * 2  # the queue bound, plus what the stuck writer took out
    assert emitting < 5  # generous: 5000 blocked puts would take 50 s against the 10 s sink timeout
    sink.release.set()
    await rlog.stop()
    assert rlog.stats.written == rlog.stats.emitted
    assert sink.data.count(b"\n") == rlog.stats.emitted


async def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(RotatingFileSink(path, max_bytes=4096, backups=2), "eu", "n", KEY, batch_max=4,
                      flush_interval_s=0.01)
    rlog.start()
    for i in range(60):
        rlog.emit(served(request_id=f"r{i:02d}"))
        if i % 4 == 3:
            await asyncio.sleep(0.02)  # let batches be written one by one
    await rlog.stop()
    files = names_in(tmp_path)
    assert files == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    kept = [line for name in reversed(files) for line in read_lines(tmp_path / name)]
    ids = [line["request_id"] for line in kept]
    assert ids == sorted(ids) and ids[-1] == "r59" and ids[0] != "r00"  # oldest rotated away, order kept
    assert all((tmp_path / n).stat().st_size <= 4096 for n in files)


async def test_stream_sink() -> None:
    out = io.BytesIO()
    rlog = RequestLog(StreamSink(out), "eu", "n", KEY)
    rlog.start()
    rlog.emit(served())
    await rlog.stop()
    assert orjson.loads(out.getvalue())["request_id"] == "req-1"
    assert out.getvalue().endswith(b"\n")


async def test_unrenderable_entry_is_counted_and_the_rest_written(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    rlog = RequestLog(open_sink(str(path)), "eu", "n", KEY)
    rlog.start()
    bad = Served(make_outcome("bad"), ContentPolicy("full"), {"role": "assistant", "content": {1, 2}})  # a set
    rlog.emit(bad)
    rlog.emit(served(request_id="good"))
    await rlog.stop()
    assert [line["request_id"] for line in read_lines(path)] == ["good"]
    assert rlog.stats.failed == 1
