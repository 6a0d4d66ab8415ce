"""The shared usage store: control-plane replicas on one etcd and one real PostgreSQL store each usage batch exactly
once, whichever replica a data plane reports it to (and however often), and answer ``gatectl usage`` alike.

Also: both engines hold the same schema (it is defined once, in ``controlplane.usage.db``), a PostgreSQL restart
costs one failed call and no reconnect by hand, and ``--usage-store`` refuses a bad URL before anything starts and
never shows a password.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from controlplane.server import ControlPlane
from controlplane.store.base import Store
from controlplane.usage.db import UsageDB, UsageDBError
from controlplane.usage.postgres import FENCE_TABLE, PostgresUsageDB, redact, schema_sql
from tests.analytics.test_report_cli import gatectl
from tests.cli.gatectl_process import ROOT, base_env, start_gatectl
from tests.conftest import free_port
from tests.discovery.conftest import DP_TOKEN, base_policy, cp_settings, eventually, put
from tests.postgres import PostgresProcess, postgres_bindir
from tests.usage.conftest import record
from tests.usage.test_usage_pipeline import report
from tollway.pb import usage_pb2 as upb

# Recent: usage retention (90 days by default) runs on the replicas meanwhile.
NOW_MS = int(time.time() * 1000)
SINCE = datetime.fromtimestamp(NOW_MS / 1000 - 86_400, UTC).date().isoformat()


def batch(sequence: int, first: int, count: int) -> upb.UsageBatch:
    records = [record(i, tenant="acme" if i % 3 else "globex") for i in range(first, first + count)]
    for r in records:
        r.timestamp_ms = NOW_MS + r.timestamp_ms % 1000
    return upb.UsageBatch(node_id="dp-1", epoch="epoch-1", sequence=sequence, records=records)


@asynccontextmanager
async def replica(etcd_url: str, usage_url: str, state_dir: Path, name: str) -> AsyncIterator[ControlPlane]:
    """A control plane that opens its own etcd client and its own PostgreSQL connections, as a replica would."""
    cp = ControlPlane(cp_settings(state_dir, store_url=etcd_url, usage_store_url=usage_url, replica_id=name))
    await cp.start()
    try:
        await eventually(lambda: cp.publisher.is_ready, what="first publish")
        yield cp
    finally:
        await cp.stop()


@pytest.fixture
async def replicas(etcd_store: Store, etcd_url: str, postgres_url: str,
                   tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, ControlPlane]]:
    await put(etcd_store, *base_policy())
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(replica(etcd_url, postgres_url, tmp_path / "cp1", "cp1"))
        two = await stack.enter_async_context(replica(etcd_url, postgres_url, tmp_path / "cp2", "cp2"))
        yield one, two


async def test_a_batch_reported_to_two_replicas_is_stored_once(
        replicas: tuple[ControlPlane, ControlPlane], tmp_path: Path) -> None:
    one, two = replicas
    assert isinstance(one.usage_db, PostgresUsageDB) and isinstance(two.usage_db, PostgresUsageDB)
    b1, b2, b3 = batch(1, 0, 40), batch(2, 40, 40), batch(3, 80, 40)
    # A data plane reported batches 1 and 2 to one replica, lost the ack of 2, failed over and sent 2 and 3 to the
    # other; meanwhile a second stream resends 2 to the first (a retry racing the failover).
    acks = await asyncio.gather(report(one.grpc_target, [b1, b2], DP_TOKEN),
                                report(two.grpc_target, [b2, b3], DP_TOKEN),
                                report(one.grpc_target, [b2], DP_TOKEN))
    assert [[a.sequence for a in stream] for stream in acks] == [[1, 2], [2, 3], [2]]  # every report acknowledged

    expected = sorted(f"req-{i}" for i in range(120))
    for cp in (one, two):
        assert sorted(await cp.usage_db.request_ids()) == expected  # each event once, seen from either replica
        assert await cp.usage_db.count_batches("dp-1") == 3
    spend = await one.usage_db.spend(["tenant"])
    assert [(r.key, r.requests) for r in spend] == [(("acme",), 80), (("globex",), 40)]
    assert await two.usage_db.spend(["tenant"]) == spend

    # What an operator sees: the same answer from either replica's admin API, through gatectl.
    answers = await asyncio.gather(*(gatectl(cp, tmp_path, "usage", "--by", "tenant", "--since", SINCE,
                                             "-o", "json") for cp in (one, two)))
    (code, out, err), (code2, out2, err2) = answers
    assert code == 0 and code2 == 0, err + err2
    assert out == out2
    rows = {r["group"]["tenant"]: r["requests"] for r in json.loads(out)["rows"]}
    assert rows == {"acme": 80, "globex": 40}


async def test_both_engines_hold_the_same_tables_and_columns(tmp_path: Path, postgres_url: str) -> None:
    """Written once: the columns of every table, in order, with their nullability, read back from each engine."""
    sql = ("SELECT table_name, column_name, is_nullable FROM information_schema.columns "
           "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position")
    duck = await UsageDB.open(str(tmp_path / "usage.duckdb"))
    pg = await PostgresUsageDB.connect(postgres_url)
    try:
        duck_columns, pg_columns = await duck.fetch(sql), await pg.fetch(sql)
    finally:
        await duck.close()
        await pg.close()
    # The duties' fencing tokens are the shared engine's alone (one DuckDB file has one writer).
    assert [c for c in pg_columns if c[0] != FENCE_TABLE] == duck_columns
    assert {t for t, _, _ in duck_columns} >= {"batches", "usage_events"}


async def test_reopening_an_existing_database_keeps_its_rows(postgres_url: str) -> None:
    first = await PostgresUsageDB.connect(postgres_url)
    try:
        assert await first.store_batch(batch(1, 0, 3))
    finally:
        await first.close()
    again = await PostgresUsageDB.connect(postgres_url)  # the schema statements again: all IF NOT EXISTS
    try:
        assert not await again.store_batch(batch(1, 0, 3))
        assert len(await again.request_ids()) == 3
    finally:
        await again.close()


async def test_refused_requests_are_kept_apart_on_both_engines(any_usage_db: UsageDB) -> None:
    b = batch(1, 0, 3)
    b.records[1].refusal = "budget_exhausted"
    assert await any_usage_db.store_batch(b)
    assert sorted(await any_usage_db.request_ids()) == ["req-0", "req-2"]
    assert await any_usage_db.fetch("SELECT request_id, refusal FROM refusals") == [("req-1", "budget_exhausted")]


async def test_the_shared_dialect_answers_alike_on_both_engines(any_usage_db: UsageDB) -> None:
    assert await any_usage_db.store_batch(batch(1, 0, 3))
    rows = await any_usage_db.fetch(
        "SELECT request_id, epoch_ms(ts) = ?, array_to_string(list_sort(ARRAY[tenant, 'b', 'a']), ','), "
        "? = ANY(tags) FROM usage_events WHERE ts >= epoch_ms(?) ORDER BY request_id",
        [NOW_MS, "chat", NOW_MS])
    assert rows == [("req-0", True, "a,b,globex", False), ("req-1", False, "a,acme,b", False),
                    ("req-2", False, "a,acme,b", False)]


async def test_a_replay_streams_from_postgresql_on_a_connection_of_its_own(postgres_url: str) -> None:
    db = await PostgresUsageDB.connect(postgres_url)
    try:
        assert await db.store_batch(batch(1, 0, 5))
        reader = await db.reader()
        try:
            def read() -> list[list[tuple[object, ...]]]:  # in a thread of its own, as a replay reads
                cursor = reader.execute("SELECT request_id FROM usage_events WHERE ts >= epoch_ms($1) "
                                        "AND epoch_ms(ts) >= $1 AND ts < epoch_ms($2) ORDER BY request_id",
                                        [NOW_MS, NOW_MS + 1000])
                return list(iter(lambda: cursor.fetchmany(2), []))

            chunks = await asyncio.to_thread(read)
        finally:
            reader.close()
        assert chunks == [[("req-0",), ("req-1",)], [("req-2",), ("req-3",)], [("req-4",)]]
    finally:
        await db.close()


@pytest.mark.pure
def test_every_column_type_has_a_postgresql_type() -> None:
    """A column added to ``db.SCHEMA`` with a type PostgreSQL is not taught fails here, not at a replica's start."""
    assert "CREATE TABLE IF NOT EXISTS usage_events" in schema_sql()


async def test_a_postgresql_restart_costs_one_failed_call() -> None:
    """A private server, stopped and started again under a connected ``PostgresUsageDB``."""
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (scripts/setup.sh dev installs it)")
        pytest.skip("PostgreSQL is not installed")
    server = PostgresProcess(bindir)
    await asyncio.to_thread(server.start)
    try:
        db = await PostgresUsageDB.connect(await asyncio.to_thread(server.create_database))
        try:
            assert await db.store_batch(batch(1, 0, 2))
            await asyncio.to_thread(server.stop)
            with pytest.raises(UsageDBError):
                await db.store_batch(batch(2, 2, 2))  # the data plane keeps it spooled and resends it
            with pytest.raises(UsageDBError):
                await db.request_ids()
            await asyncio.to_thread(server.start)
            assert await db.store_batch(batch(2, 2, 2))  # a new connection, without anyone asking
            assert sorted(await db.request_ids()) == ["req-0", "req-1", "req-2", "req-3"]
        finally:
            await db.close()
    finally:
        await asyncio.to_thread(server.stop)
        server.remove()


async def serve(tmp_path: Path, *args: str) -> tuple[int, str]:
    """``gatectl controlplane serve`` as an operator runs it, expected to exit on its own."""
    env = base_env(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "controlplane", "serve", "--state-dir", str(tmp_path / "cp"),
        "--admin-port", "0", "--grpc-port", "0", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_usage_store_flag_refuses_a_bad_url_and_never_shows_a_password(tmp_path: Path) -> None:
    (code, output), (code2, output2) = await asyncio.gather(
        serve(tmp_path, "--usage-store", "mysql://ops:hunter2@db/usage"),
        serve(tmp_path, "--usage-store", f"postgresql://ops:hunter2@127.0.0.1:{free_port()}/usage"))
    assert code == 2, output  # a usage error: nothing started
    assert "--usage-store" in output and "unsupported usage store URL" in output
    assert code2 != 0 and "cannot open the usage database postgresql://ops:***@127.0.0.1:" in output2, output2
    assert "hunter2" not in output + output2
    assert "Traceback" not in output2


def test_controlplane_serve_uses_the_postgresql_it_is_given(tmp_path: Path, postgres_url: str) -> None:
    """The flag as an operator types it (a password in the URL: the test cluster trusts loopback and ignores it)."""
    url = postgres_url.replace("tollway@", "tollway:hunter2@")
    cp = start_gatectl(tmp_path, "cp", "controlplane", "serve", "--state-dir", str(tmp_path / "cp"),
                       "--admin-port", "0", "--grpc-port", "0", "--usage-store", url, env=base_env(tmp_path))
    try:
        ready = cp.wait_for(r"control plane ready: .* usage in (\S+)")
        assert ready.group(1) == url.replace("hunter2", "***")
    finally:
        assert cp.interrupt() == 0
    assert "hunter2" not in cp.stderr.read_text() + cp.stdout.read_text()
    assert not (tmp_path / "cp" / "usage.duckdb").exists()  # not the default: the database it was given
    with psycopg.connect(postgres_url) as connection:  # which it prepared: the schema is there
        tables = connection.execute("SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = current_schema()").fetchall()
    assert {"batches", "usage_events"} <= {t for (t,) in tables}


@pytest.mark.pure
def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://ops:s3cret@db.internal:5433/usage?sslmode=require") == \
        "postgresql://ops:***@db.internal:5433/usage?sslmode=require"
    assert redact("postgresql://ops@db/usage") == "postgresql://ops@db/usage"
