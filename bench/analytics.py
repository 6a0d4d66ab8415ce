"""How long the usage analytics take on a million events (target: each well under a second).

Generates synthetic ``usage_events`` inside DuckDB (one ``INSERT ... SELECT FROM range(n)``, no Python loop) into a
fresh file, through the same ``UsageDB`` the control plane uses, then times every report of
``controlplane.usage.analytics`` over the whole period and over its last 7 days: the first (cold) run and the median
of the following runs.

The data: 30 days, events evenly spread in time (as a spool delivers them), 50 tenants of 4 projects, 20,000
users, 8 models served by 12 deployments of 4 providers, 1-2 of 6 tags per request, ~3 % errors, log-normal-ish
latencies.

    python -m bench.analytics [--events 1000000] [--runs 5] [--keep FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controlplane.usage.analytics import Analytics, Span
from controlplane.usage.db import UsageDB

DAYS = 30

# Every column is a function of i (and random() for the noise); $1 start (unix ms), $2 period (ms), $3 events.
GENERATE = """
INSERT INTO usage_events
SELECT
    'dp-' || (i % 4), 'bench', i // 500, i % 500, 'req-' || i,
    epoch_ms($1 + (i * $2 // $3)),
    'tenant-' || (i % 50),
    'project-' || ((i // 50) % 4),
    'user-' || ((i * 7919) % 20000),
    'key-' || (i % 200),
    ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet', 'claude-haiku', 'llama-70b', 'mistral-large', 'gemini-pro',
     'o3-mini'][1 + i % 8],
    'dep-' || (i % 8) || CASE WHEN i % 8 < 4 THEN '-' || ((i // 8) % 2) ELSE '' END,
    ['openai', 'anthropic', 'meta', 'google'][1 + (i % 8) // 2],
    ['eu', 'us'][1 + i % 2],
    'v1',
    200 + (i % 3000), (i % 5) * 40, 50 + (i % 700),
    (200 + (i % 3000)) * 3 + (50 + (i % 700)) * 12,
    CAST(200 + 1800 * random() * random() + (i % 8) * 50 AS INTEGER),
    CAST(50 + 400 * random() * random() AS INTEGER),
    CAST(180 + 1700 * random() * random() AS INTEGER),
    CASE WHEN random() < 0.03 THEN 502 ELSE 200 END,
    '',
    1,
    CASE WHEN i % 3 = 0 THEN ['chat', 'support'] ELSE [['search', 'batch', 'agents', 'eval'][1 + i % 4]] END,
    i % 2 = 0
FROM range($3) AS t(i)
"""
MARK_ERRORS = "UPDATE usage_events SET error_type = 'upstream_error' WHERE status >= 400"


async def generate(db: UsageDB, n: int, start: datetime) -> float:
    began = time.perf_counter()
    await db.fetch("SELECT setseed(0.42)")
    await db.fetch(GENERATE, [int(start.timestamp() * 1000), DAYS * 86_400_000, n])
    await db.fetch(MARK_ERRORS)
    await db.fetch("CHECKPOINT")
    return time.perf_counter() - began


def reports(analytics: Analytics, span: Span) -> dict[str, Callable[[], Awaitable[list[Any]]]]:
    return {
        "daily cost by tenant": lambda: analytics.daily_cost("tenant", span),
        "daily cost by project": lambda: analytics.daily_cost("project", span),
        "daily cost by tag": lambda: analytics.daily_cost("tag", span),
        "latency p50/p95 by route": lambda: analytics.latency("route", span),
        "latency p50/p95 by deployment": lambda: analytics.latency("deployment", span),
        "error rate by provider": lambda: analytics.errors("provider", span),
        "error rate by deployment": lambda: analytics.errors("deployment", span),
        "top users by cost": lambda: analytics.top_users(span, "cost", 10),
        "top users by requests": lambda: analytics.top_users(span, "requests", 10),
    }


async def time_report(run: Callable[[], Awaitable[list[Any]]], runs: int) -> tuple[float, float, int]:
    """(cold seconds, median warm seconds, rows)."""
    began = time.perf_counter()
    rows = await run()
    cold = time.perf_counter() - began
    warm = []
    for _ in range(runs):
        began = time.perf_counter()
        await run()
        warm.append(time.perf_counter() - began)
    return cold, statistics.median(warm), len(rows)


async def main(events: int, runs: int, keep: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = keep or Path(tmp) / "usage.duckdb"
        db = await UsageDB.open(str(path))
        try:
            now = datetime.now(UTC).replace(microsecond=0)
            seconds = await generate(db, events, now - timedelta(days=DAYS))
            count = (await db.fetch("SELECT count(*) FROM usage_events"))[0][0]
            size = path.stat().st_size / 2**20
            print(f"generated {count:,} events in {seconds:.2f} s ({size:.0f} MiB file)\n")
            analytics = Analytics(db)
            spans = {"30 days": Span(), "7 days": Span(since_ms=int((now - timedelta(days=7)).timestamp() * 1000))}
            header = f"{'report':32} {'period':8} {'rows':>6} {'cold ms':>8} {'median ms':>10}"
            print(header)
            print("-" * len(header))
            worst = 0.0
            for label, span in spans.items():
                for name, run in reports(analytics, span).items():
                    cold, median, rows = await time_report(run, runs)
                    worst = max(worst, cold, median)
                    print(f"{name:32} {label:8} {rows:>6} {cold * 1000:>8.1f} {median * 1000:>10.1f}")
            print(f"\nslowest: {worst * 1000:.1f} ms (target: well under 1000 ms)")
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="warm runs per report (the median is shown)")
    parser.add_argument("--keep", type=Path, default=None, help="write the DuckDB file here and keep it")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.runs, args.keep))
