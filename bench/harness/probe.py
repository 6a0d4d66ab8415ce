"""A probe beside a load: a few keep-alive connections sending paced requests, timing each answer by status.

wrk's percentiles mix every answer; under overload the question is how long an *admitted* request takes and how
long a *refused* one waits for its 503. ``python -m bench.harness.probe URL --key K --body JSON --seconds S``
prints ``{"200": [ms, ...], "503": [ms, ...]}``: each connection sends a request, reads the whole answer
(Content-Length framed), and waits until its next slot (``--rate`` per second over ``--connections``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from urllib.parse import urlsplit


async def _one(host: str, port: int, request: bytes, until: float, pace_s: float,
               out: dict[str, list[float]]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.monotonic()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            out[head.split(b" ", 2)[1].decode()].append((time.monotonic() - now) * 1000)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            await asyncio.sleep(max(0.0, now + pace_s - time.monotonic()))
    finally:
        writer.close()


async def probe(url: str, key: str, body: bytes, seconds: float, connections: int, rate: float
                ) -> dict[str, list[float]]:
    parts = urlsplit(url)
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    out: dict[str, list[float]] = defaultdict(list)
    until = time.monotonic() + seconds
    await asyncio.gather(*(_one(parts.hostname or "127.0.0.1", parts.port or 80, request, until,
                                connections / rate, out) for _ in range(connections)))
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--key", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second, all connections together")
    args = parser.parse_args()
    result = asyncio.run(probe(args.url, args.key, args.body.encode(), args.seconds, args.connections, args.rate))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
