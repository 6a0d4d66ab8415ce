"""How long ``gatectl plan --replay 7d`` takes for a week of a 100-team organisation: 1,000,000 recorded requests.

Generates the rows straight into a DuckDB usage database (the control plane's schema, ``controlplane.usage.db``;
SQL over ``range()``, so generating costs seconds: 99 % usage events, 1 % refusals, and spend before the window
for the tenants with a budget), builds a current and a proposed policy of 100 tenants (300
keys, three routes: weighted, priority and cheapest over four deployments in two providers; rate limits and
budgets on some tenants; the proposal moves a route, restricts ten tenants and tightens ten rate limits), and
times the replay the control plane runs (``controlplane.replay``: reading the window in chunks, both policies,
the report) on one core: DuckDB is given one thread, and the replay is one Python thread.

    python -m bench.replay [--rows 1000000] [--days 7]

Prints the rows, the wall and CPU seconds, requests per second and the report's change counts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from typing import Any

import duckdb

from controlplane.policy.compile import PolicySet, compile_region
from controlplane.policy.resources import parse_resource
from controlplane.replay.report import replay
from controlplane.replay.traffic import count_traffic, month_start_ms, read_traffic, spend_before, spent_by_scope
from controlplane.usage.db import MIGRATE, SCHEMA
from tollway.pb import snapshot_pb2 as pb

TEAMS = 100
KEYS_PER_TEAM = 3
ROUTES = ("chat-smart", "chat-fast", "chat-cheap")


def _doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _model(name: str, provider: str, inp: str, out: str) -> dict[str, Any]:
    return _doc("Model", name, provider=provider, upstreamModel=name, contextWindow=128_000, maxOutputTokens=4096,
                pricing={"inputPerMillion": inp, "outputPerMillion": out})


def policy(proposed: bool) -> PolicySet:
    docs = [_doc("Provider", "openai-eu", type="openai", baseUrl="http://127.0.0.1:1/v1", region="eu"),
            _doc("Provider", "anthropic-eu", type="anthropic", baseUrl="http://127.0.0.1:1/v1", region="eu"),
            _model("gpt-4o-eu", "openai-eu", "2.5", "10"), _model("gpt-4o-mini-eu", "openai-eu", "0.15", "0.6"),
            _model("claude-sonnet-eu", "anthropic-eu", "3", "15"),
            _model("claude-haiku-eu", "anthropic-eu", "0.8", "4"),
            _doc("Route", "chat-smart", models=["gpt-4o-eu", "claude-sonnet-eu"], strategy="weighted",
                 weights=[3, 1]),
            _doc("Route", "chat-fast", models=["claude-haiku-eu" if proposed else "gpt-4o-mini-eu"],
                 strategy="priority"),
            _doc("Route", "chat-cheap", models=["gpt-4o-mini-eu", "claude-haiku-eu", "gpt-4o-eu"])]
    for t in range(TEAMS):
        name = f"team-{t:03d}"
        spec: dict[str, Any] = {"regions": ["eu"], "projects": [{"name": "web"}, {"name": "batch"}]}
        if t % 10 == 0:
            spec["rateLimits"] = {"requestsPerMinute": 30 if proposed else 600}
        if t % 10 == 1:
            spec["budget"] = {"monthlyUsd": "50"}
        if proposed and t % 10 == 2:
            spec["routes"] = ["chat-smart", "chat-cheap"]
        docs.append(_doc("Tenant", name, **spec))
        for k in range(KEYS_PER_TEAM):
            key = f"{name}-key-{k}"
            digest = hashlib.sha256(key.encode()).hexdigest()
            docs.append(_doc("ApiKey", key, tenant=name, project="web" if k else "batch", hash=f"sha256:{digest}",
                             hint="tw_...abcd"))
    return PolicySet.of(parse_resource(d) for d in docs)


def _team(i: str) -> str:
    return f"'team-' || lpad(({i} % {TEAMS})::VARCHAR, 3, '0')"


def _key(i: str) -> str:
    return f"{_team(i)} || '-key-' || (({i} // {TEAMS}) % {KEYS_PER_TEAM})::VARCHAR"


def _project(i: str) -> str:
    return f"CASE WHEN ({i} // {TEAMS}) % {KEYS_PER_TEAM} = 0 THEN 'batch' ELSE 'web' END"


def generate(db: duckdb.DuckDBPyConnection, rows: int, since_ms: int, days: int) -> None:
    """``rows`` recorded requests spread evenly over the window, from SQL alone: 99 % usage events, 1 % refusals
    (a model no policy has), and before the window, in its month, $10 spent by each tenant with a $50 budget."""
    step = days * 86_400_000 / rows
    ts = f"epoch_ms(({since_ms} + i * {step})::BIGINT)"
    db.execute(f"""
        INSERT INTO usage_events SELECT
            'dp-1', 'bench', (i // 500)::UBIGINT, (i % 500)::INTEGER, 'req-' || i::VARCHAR, {ts},
            {_team("i")}, {_project("i")}, '', {_key("i")},
            list_element({list(ROUTES)}, ((hash(i) % 3) + 1)::INTEGER) AS route,
            CASE route WHEN 'chat-smart' THEN 'gpt-4o-eu' ELSE 'gpt-4o-mini-eu' END, 'openai-eu',
            'eu', 'v1', 200 + hash(i * 3) % 2000, 0, 50 + hash(i * 5) % 500, 0, 800, 300, 700, 200, '', 1,
            []::VARCHAR[], false, 0::HUGEINT, 'upstream', 0, 0,
            'chat', []::VARCHAR[], 300 + hash(i * 3) % 2000, CASE WHEN i % 2 = 0 THEN 1024 ELSE NULL END
        FROM range({rows}) t(i) WHERE i % 100 != 99
    """)
    db.execute(f"""
        INSERT INTO refusals SELECT
            'dp-1', 'bench', (i // 500)::UBIGINT, (i % 500)::INTEGER, 'req-' || i::VARCHAR, {ts},
            {_team("i")}, {_project("i")}, '', {_key("i")}, 'gpt-5', 'eu', 'v1', 404, 'model_not_found', false,
            'chat', []::VARCHAR[], 300 + hash(i * 3) % 2000, NULL
        FROM range({rows}) t(i) WHERE i % 100 = 99
    """)
    month_start = month_start_ms(since_ms)
    if month_start < since_ms:
        db.execute(f"""
            INSERT INTO usage_events SELECT
                'dp-1', 'before', 0, t::INTEGER, 'before-' || t::VARCHAR,
                epoch_ms({(month_start + since_ms) // 2}), {_team("t")}, 'web', '', {_team("t")} || '-key-1',
                'chat-fast', 'gpt-4o-mini-eu', 'openai-eu', 'eu', 'v1', 0, 0, 0, 10000000, 800, 300, 700, 200, '',
                1, []::VARCHAR[], false, 10000000000000::HUGEINT, 'upstream', 0, 0, 'chat', []::VARCHAR[], 0, NULL
            FROM range({TEAMS}) r(t) WHERE t % 10 = 1
        """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = duckdb.connect(os.path.join(tmp, "usage.duckdb"))
        db.execute("SET threads = 1")
        db.execute("SET enable_progress_bar = false")
        db.execute(SCHEMA)
        db.execute(MIGRATE)
        until_ms = int(time.time() * 1000)
        since_ms = until_ms - args.days * 86_400_000
        started = time.perf_counter()
        generate(db, args.rows, since_ms, args.days)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s")
        current, proposed = compile_region(policy(False), "eu"), compile_region(policy(True), "eu")
        empty = pb.Snapshot()

        def snapshots(region: str) -> tuple[pb.Snapshot, pb.Snapshot]:
            return (current, proposed) if region == "eu" else (empty, empty)

        wall, cpu = time.perf_counter(), time.process_time()
        total = count_traffic(db, since_ms, until_ms)
        groups = spend_before(db, since_ms)
        report = replay(read_traffic(db, since_ms, until_ms), snapshots,
                        lambda index: spent_by_scope(groups, index, since_ms), since_ms, until_ms)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"replayed {total:,} recorded requests through two policies in {wall:.1f}s wall, {cpu:.1f}s CPU "
              f"({total / wall:,.0f} requests/s)")
        print(f"changes: {report['changes']}; cost {report['cost']['deltaPerDayUsd']}/day; "
              f"{report['reproduced']['matching']:,} decided as recorded")


if __name__ == "__main__":
    main()
