"""The clients of ``test_first_use``, in a process of their own (as an organization's clients are): the openai
SDK is the heaviest part of that test, and sharing one event loop with the servers would starve the control
plane's lease answers the test is about.

``python -m tests.budget.first_use_clients URL,URL,... SECRET REQUESTS USERS CONCURRENCY`` prints one JSON line:
the outcome counts (``"200"`` or the error code) and the sum of the costs the gateway reported, in pico-dollars.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import openai
import orjson


async def run(urls: list[str], secret: str, requests: int, users: int, concurrency: int) -> dict[str, object]:
    clients = [openai.AsyncOpenAI(base_url=f"{u}/v1", api_key=secret, max_retries=0) for u in urls]
    outcomes: Counter[str] = Counter()
    told = 0
    queue = iter(range(requests))

    async def worker() -> None:
        nonlocal told
        for i in queue:
            try:
                raw = await clients[i % len(clients)].chat.completions.with_raw_response.create(
                    model="chat", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=16,
                    user=f"new-user-{i % users}")
                told += pico_of_usd(raw.headers["x-tollway-cost-usd"])
                outcomes["200"] += 1
            except openai.APIStatusError as e:
                body = e.body if isinstance(e.body, dict) else {}
                outcomes[str(body.get("code") or e.status_code)] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for c in clients:
            await c.close()
    return {"outcomes": dict(outcomes), "told_pico": told}


def pico_of_usd(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**12 + int(frac.ljust(12, "0"))


if __name__ == "__main__":
    urls, secret, n, users, concurrency = sys.argv[1].split(","), sys.argv[2], *map(int, sys.argv[3:6])
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(run(urls, secret, n, users, concurrency))) + b"\n")
