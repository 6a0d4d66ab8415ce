"""How long a data plane holds requests up while something happens to it (a large snapshot swapped in).

``python -m bench.harness.stall_probe --target tcp:HOST:PORT --target unix:PATH ... --key K --body JSON`` opens
one keep-alive connection per target and sends one small request on each every ``--every-ms`` (5 ms), until its
standard input closes; then it prints ``{"samples": [[target, sent, ms, status, snapshot], ...]}``: the target's
index, when the request was sent (``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process of the
machine, so the caller can place the samples against its own timeline), how long the answer took, its status and
its ``x-tollway-snapshot`` header. A request held up by a stalled loop is simply late: the next one goes out when
it has been answered (closed loop), so the worst latency is the longest stall.

``summarize`` is the pure half: samples and the caller's windows -> percentiles before and during them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

Sample = tuple[int, float, float, int, str]  # target index, sent (monotonic s), latency (ms), status, snapshot


async def _open(target: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kind, _, where = target.partition(":")
    if kind == "unix":
        return await asyncio.open_unix_connection(where)
    host, _, port = where.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _one(index: int, target: str, request: bytes, every_s: float, stop: asyncio.Event,
               out: list[Sample]) -> None:
    reader, writer = await _open(target)
    try:
        while not stop.is_set():
            sent = time.monotonic()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length, snapshot = 0, ""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-tollway-snapshot":
                    snapshot = value.strip().decode()
            await reader.readexactly(length)
            out.append((index, sent, (time.monotonic() - sent) * 1000, int(head.split(b" ", 2)[1]), snapshot))
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await _open(target)
            await asyncio.sleep(max(0.0, sent + every_s - time.monotonic()))
    finally:
        writer.close()


async def probe(targets: Sequence[str], path: str, key: str, body: bytes, every_s: float) -> list[Sample]:
    """Probe every target until standard input reaches its end."""
    request = (f"POST {path} HTTP/1.1\r\nHost: probe\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    out: list[Sample] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_one(i, t, request, every_s, stop, out)) for i, t in enumerate(targets)]
    print("probing", flush=True)  # the caller waits for this line: every connection is about to send
    await asyncio.to_thread(sys.stdin.buffer.read)
    stop.set()
    await asyncio.gather(*tasks)
    return out


@dataclass(frozen=True)
class Latencies:
    """Percentiles of a set of probe answers, in milliseconds (zeros when there were none)."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, ms: Sequence[float]) -> Latencies:
        if not ms:
            return cls(0, 0.0, 0.0, 0.0)
        ordered = sorted(ms)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return cls(len(ordered), statistics.median(ordered), p99, ordered[-1])


@dataclass(frozen=True)
class Stall:
    """The probe's answers before the windows (``quiet_s`` up to each one's start) and during them, per target
    too; ``failed``: answers other than 200 among them."""

    before: Latencies
    during: Latencies
    worst_per_window: tuple[float, ...]
    worst_per_target: tuple[float, ...]
    failed: int


def summarize(samples: Sequence[Sample], windows: Sequence[tuple[float, float]], targets: int,
              quiet_s: float = 1.0) -> Stall:
    """Place each answer against the windows (monotonic seconds): *during* one if it was in flight at any moment
    of it (sent before its end, answered after its start), *before* one if it was answered in the ``quiet_s``
    before its start."""
    before: list[float] = []
    during: list[list[float]] = [[] for _ in windows]
    per_target = [0.0] * targets
    failed = 0
    for index, sent, ms, status, _ in samples:
        answered = sent + ms / 1000
        for w, (start, end) in enumerate(windows):
            if sent <= end and answered >= start:
                during[w].append(ms)
                per_target[index] = max(per_target[index], ms)
                failed += status != 200
                break
            if start - quiet_s <= answered < start:
                before.append(ms)
                failed += status != 200
                break
    return Stall(before=Latencies.of(before), during=Latencies.of([ms for w in during for ms in w]),
                 worst_per_window=tuple(max(w, default=0.0) for w in during), worst_per_target=tuple(per_target),
                 failed=failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", required=True, help="tcp:HOST:PORT or unix:PATH")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--every-ms", type=float, default=5.0)
    args = parser.parse_args()
    samples = asyncio.run(probe(args.target, args.path, args.key, args.body.encode(), args.every_ms / 1000))
    json.dump({"samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
