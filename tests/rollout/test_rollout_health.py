"""The canary's error rate and latency against the others', over usage stored as the data planes ship it, on
both usage stores (DuckDB, and the PostgreSQL that several replicas share): what ``gatectl rollout status`` shows
and the automatic abort judges."""

from __future__ import annotations

import itertools

from controlplane.rollout.health import traffic
from controlplane.rollout.verdict import Traffic
from controlplane.usage.db import UsageDB
from tollway.pb import usage_pb2 as upb

NOW = 1_900_000_000.0
_sequence = itertools.count(1)


def served(node: str, age_s: float, status: int, latency_ms: int = 100, error_type: str = "") -> upb.UsageRecord:
    if not error_type and status >= 400:
        error_type = "upstream_timeout" if status == 504 else "upstream_error" if status >= 500 else "upstream_refused"
    return upb.UsageRecord(request_id=f"r{next(_sequence)}", timestamp_ms=int((NOW - age_s) * 1000), tenant="acme",
                           key_id="k", route="chat", deployment="d", provider="p", region="eu", node_id=node,
                           snapshot_version="v", status=status, error_type=error_type, latency_ms=latency_ms,
                           attempts=1)


def refused(node: str, age_s: float, status: int) -> upb.UsageRecord:
    return upb.UsageRecord(request_id=f"r{next(_sequence)}", timestamp_ms=int((NOW - age_s) * 1000), tenant="acme",
                           key_id="k", route="chat", region="eu", node_id=node, snapshot_version="v", status=status,
                           error_type="rate_limit_error", refusal="rate_limited")


async def ship(db: UsageDB, node: str, *records: upb.UsageRecord) -> None:
    batch = upb.UsageBatch(node_id=node, epoch="e1", sequence=next(_sequence), records=records)
    assert await db.store_batch(batch)


async def test_errors_are_5xx_and_gateway_errors_over_every_request_of_the_window(any_usage_db: UsageDB) -> None:
    db = any_usage_db
    await ship(db, "dp-eu-1",
               served("dp-eu-1", 10, 200, 300), served("dp-eu-1", 20, 200, 500),
               served("dp-eu-1", 30, 500, 5), served("dp-eu-1", 40, 502, 7),  # the upstream failed; the gateway's 502
               served("dp-eu-1", 50, 504, 30_000),  # timed out
               served("dp-eu-1", 60, 200, 900, "stream_aborted"),  # the client went away: no one's error
               served("dp-eu-1", 400, 500))  # older than the window
    await ship(db, "dp-eu-1", refused("dp-eu-1", 5, 429), refused("dp-eu-1", 6, 403))  # requests, not errors
    await ship(db, "dp-eu-2", served("dp-eu-2", 10, 200, 80))
    await ship(db, "dp-us-1", served("dp-us-1", 10, 200, 100), served("dp-us-1", 11, 200, 120),
               served("dp-us-1", 12, 500, 1), served("dp-us-1", 13, 404, 2))  # a 4xx from upstream: not an error

    canary, others = await traffic(db, ["dp-eu-1"], NOW - 300)
    assert canary == Traffic(requests=8, errors=3, p50_ms=500.0)  # median of the successes 300, 500, 900
    assert others == Traffic(requests=5, errors=1, p50_ms=100.0)  # 80, 100, 120
    assert canary.error_rate == 3 / 8 and others.error_rate == 1 / 5

    both, rest = await traffic(db, ["dp-eu-1", "dp-eu-2"], NOW - 300)
    assert (both.requests, both.errors, rest.requests) == (9, 3, 4)

    recent, _ = await traffic(db, ["dp-eu-1"], NOW - 35)  # the window starts later (e.g. at the rollout's start)
    assert recent == Traffic(requests=5, errors=1, p50_ms=400.0)

    nobody, everyone = await traffic(db, [], NOW - 300)
    assert nobody == Traffic() and everyone.requests == 13
