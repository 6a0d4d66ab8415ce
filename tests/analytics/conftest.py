"""Analytics fixtures: a known set of usage events over the last three UTC days, and a real control plane
(embedded store, DuckDB in ``tmp_path``, admin API on a free loopback port) that has stored them.

The events (``known_events``), per day d = 0 (two days ago), 1, 2 (today):

- acme / web, route ``gpt-4o`` (openai, deployment ``openai-gpt-4o``): 4 requests, latencies 100, 200, 300,
  400 ms (ttfb 10..40), each costing 250,000 * (d + 1) micro-dollars; users alice, alice, alice, bob; tag ``chat``.
  Tokens each: 1000 input (250 of them cache reads), 100 output.
- globex / api, route ``claude`` (anthropic, ``anthropic-claude``): 2 requests costing 500,000 each, user carol
  and one without a user; on today only, the second one failed (status 502, ``upstream_error``, 1000 ms); tag
  ``batch``. Tokens each: 2000 input (1200 cache reads, 300 cache writes at the 5-minute rate and 100 at the
  1-hour one), 200 output (50 of them reasoning).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.server import ControlPlane
from controlplane.store.open import open_store
from tests.discovery.conftest import base_policy, put, running_control_plane
from tollway.pb import usage_pb2 as upb

ADMIN_TOKEN = "admin-token-for-tests"  # the one tests.discovery.conftest.cp_settings configures


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def known_events(day0: datetime) -> list[upb.UsageRecord]:
    records = []
    for d in range(3):
        start = day0 + timedelta(days=d, minutes=1)
        for i, user in enumerate(("alice", "alice", "alice", "bob")):
            records.append(upb.UsageRecord(
                request_id=f"acme-{d}-{i}", timestamp_ms=_ms(start) + i, tenant="acme", project="web", user=user,
                key_id="web-key", route="gpt-4o", deployment="openai-gpt-4o", provider="openai", region="eu",
                snapshot_version="v1", input_tokens=1000, cached_input_tokens=250, output_tokens=100,
                cost_micros=250_000 * (d + 1),
                latency_ms=100 * (i + 1), ttfb_ms=10 * (i + 1), upstream_ms=90 * (i + 1), status=200, attempts=1,
                tags=["chat"], node_id="dp-1"))
        for i, user in enumerate(("carol", "")):
            failed = d == 2 and i == 1
            records.append(upb.UsageRecord(
                request_id=f"globex-{d}-{i}", timestamp_ms=_ms(start) + 10 + i, tenant="globex", project="api",
                user=user, key_id="api-key", route="claude", deployment="anthropic-claude", provider="anthropic",
                region="eu", snapshot_version="v1", input_tokens=2000, cached_input_tokens=1200,
                cache_write_tokens=300, cache_write_1h_tokens=100, output_tokens=200, reasoning_tokens=50,
                cost_micros=500_000,
                latency_ms=1000 if failed else 500, ttfb_ms=50, upstream_ms=450, status=502 if failed else 200,
                error_type="upstream_error" if failed else "", attempts=2 if failed else 1, tags=["batch"],
                node_id="dp-1"))
    return records


def batch(records: list[upb.UsageRecord], sequence: int = 1) -> upb.UsageBatch:
    return upb.UsageBatch(node_id="dp-1", epoch="epoch-1", sequence=sequence, records=records)


@pytest.fixture
async def analytics_cp(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A running control plane whose usage database holds ``known_events(today() - 2 days)``."""
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        await put(store, *base_policy())
        async with running_control_plane(store, tmp_path / "cp") as cp:
            assert await cp.usage_db.store_batch(batch(known_events(today() - timedelta(days=2))))
            yield cp
    finally:
        await store.close()
