"""Usage events in DuckDB: idempotent batch storage and spend reports. The schema is in docs/usage-schema.md.

A batch is stored in one transaction together with its row in ``batches`` (primary key node_id, epoch,
sequence); a batch whose key is already there is a no-op. So a data plane may resend anything it has not seen
acknowledged, and nothing is ever counted twice.

DuckDB calls block, and a connection must not be used by two threads at once: every call runs in one
dedicated worker thread, so callers on the event loop just ``await``. Prompts and responses never reach this
module: a ``UsageRecord`` has no field for them.

Errors::

    UsageDBError       the database failed (disk full, corrupt file, closed); duckdb errors are translated here
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import duckdb

from tollway.money import record_cost_pico
from tollway.pb import usage_pb2 as upb

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    node_id      VARCHAR   NOT NULL,
    epoch        VARCHAR   NOT NULL,
    sequence     UBIGINT   NOT NULL,
    records      INTEGER   NOT NULL,
    received_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (node_id, epoch, sequence)
);
CREATE TABLE IF NOT EXISTS usage_events (
    node_id              VARCHAR   NOT NULL,
    epoch                VARCHAR   NOT NULL,
    sequence             UBIGINT   NOT NULL,
    ordinal              INTEGER   NOT NULL,
    request_id           VARCHAR   NOT NULL,
    ts                   TIMESTAMP NOT NULL,
    tenant               VARCHAR   NOT NULL,
    project              VARCHAR   NOT NULL,
    "user"               VARCHAR   NOT NULL,
    key_id               VARCHAR   NOT NULL,
    route                VARCHAR   NOT NULL,
    deployment           VARCHAR   NOT NULL,
    provider             VARCHAR   NOT NULL,
    region               VARCHAR   NOT NULL,
    snapshot_version     VARCHAR   NOT NULL,
    input_tokens         BIGINT    NOT NULL,
    cached_input_tokens  BIGINT    NOT NULL,
    output_tokens        BIGINT    NOT NULL,
    cost_micros          BIGINT    NOT NULL,
    latency_ms           INTEGER   NOT NULL,
    ttfb_ms              INTEGER   NOT NULL,
    upstream_ms          INTEGER   NOT NULL,
    status               INTEGER   NOT NULL,
    error_type           VARCHAR   NOT NULL,
    attempts             INTEGER   NOT NULL,
    tags                 VARCHAR[] NOT NULL,
    stream               BOOLEAN   NOT NULL,
    cost_pico            HUGEINT,
    usage_source         VARCHAR,
    cache_write_tokens   BIGINT,
    reasoning_tokens     BIGINT,
    surface              VARCHAR,
    needs                VARCHAR[],
    estimated_prompt_tokens BIGINT,
    max_tokens           BIGINT
);
CREATE TABLE IF NOT EXISTS refusals (
    node_id              VARCHAR   NOT NULL,
    epoch                VARCHAR   NOT NULL,
    sequence             UBIGINT   NOT NULL,
    ordinal              INTEGER   NOT NULL,
    request_id           VARCHAR   NOT NULL,
    ts                   TIMESTAMP NOT NULL,
    tenant               VARCHAR   NOT NULL,
    project              VARCHAR   NOT NULL,
    "user"               VARCHAR   NOT NULL,
    key_id               VARCHAR   NOT NULL,
    route                VARCHAR   NOT NULL,
    region               VARCHAR   NOT NULL,
    snapshot_version     VARCHAR   NOT NULL,
    status               INTEGER   NOT NULL,
    refusal              VARCHAR   NOT NULL,
    stream               BOOLEAN   NOT NULL,
    surface              VARCHAR   NOT NULL,
    needs                VARCHAR[] NOT NULL,
    estimated_prompt_tokens BIGINT NOT NULL,
    max_tokens           BIGINT
);
"""
# A database written before cost_pico and usage_source: add them, and fill cost_pico exactly from cost_micros.
MIGRATE = """
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS cost_pico HUGEINT;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS usage_source VARCHAR;
UPDATE usage_events SET cost_pico = CAST(cost_micros AS HUGEINT) * 1000000 WHERE cost_pico IS NULL;
UPDATE usage_events SET usage_source = 'upstream' WHERE usage_source IS NULL;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS cache_write_tokens BIGINT;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS reasoning_tokens BIGINT;
UPDATE usage_events SET cache_write_tokens = 0 WHERE cache_write_tokens IS NULL;
UPDATE usage_events SET reasoning_tokens = 0 WHERE reasoning_tokens IS NULL;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS surface VARCHAR;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS needs VARCHAR[];
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS estimated_prompt_tokens BIGINT;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS max_tokens BIGINT;
"""

# Column name, SQL list type for the columnar insert, and how to read it from (batch, ordinal, record).
_COLUMNS: list[tuple[str, str, Callable[[upb.UsageBatch, int, upb.UsageRecord], Any]]] = [
    ("node_id", "VARCHAR", lambda b, i, r: r.node_id or b.node_id),
    ("epoch", "VARCHAR", lambda b, i, r: b.epoch),
    ("sequence", "UBIGINT", lambda b, i, r: b.sequence),
    ("ordinal", "INTEGER", lambda b, i, r: i),
    ("request_id", "VARCHAR", lambda b, i, r: r.request_id),
    ("ts", "BIGINT", lambda b, i, r: r.timestamp_ms),  # converted by epoch_ms() in the INSERT
    ("tenant", "VARCHAR", lambda b, i, r: r.tenant),
    ("project", "VARCHAR", lambda b, i, r: r.project),
    ('"user"', "VARCHAR", lambda b, i, r: r.user),
    ("key_id", "VARCHAR", lambda b, i, r: r.key_id),
    ("route", "VARCHAR", lambda b, i, r: r.route),
    ("deployment", "VARCHAR", lambda b, i, r: r.deployment),
    ("provider", "VARCHAR", lambda b, i, r: r.provider),
    ("region", "VARCHAR", lambda b, i, r: r.region),
    ("snapshot_version", "VARCHAR", lambda b, i, r: r.snapshot_version),
    ("input_tokens", "BIGINT", lambda b, i, r: r.input_tokens),
    ("cached_input_tokens", "BIGINT", lambda b, i, r: r.cached_input_tokens),
    ("output_tokens", "BIGINT", lambda b, i, r: r.output_tokens),
    ("cost_micros", "BIGINT", lambda b, i, r: r.cost_micros),
    ("latency_ms", "INTEGER", lambda b, i, r: r.latency_ms),
    ("ttfb_ms", "INTEGER", lambda b, i, r: r.ttfb_ms),
    ("upstream_ms", "INTEGER", lambda b, i, r: r.upstream_ms),
    ("status", "INTEGER", lambda b, i, r: r.status),
    ("error_type", "VARCHAR", lambda b, i, r: r.error_type),
    ("attempts", "INTEGER", lambda b, i, r: r.attempts),
    ("tags", "VARCHAR[]", lambda b, i, r: list(r.tags)),
    ("stream", "BOOLEAN", lambda b, i, r: r.stream),
    ("cost_pico", "HUGEINT", lambda b, i, r: record_cost_pico(r.cost_pico, r.cost_micros)),
    ("usage_source", "VARCHAR", lambda b, i, r: r.usage_source or "upstream"),
    ("cache_write_tokens", "BIGINT", lambda b, i, r: r.cache_write_tokens + r.cache_write_1h_tokens),
    ("reasoning_tokens", "BIGINT", lambda b, i, r: r.reasoning_tokens),
    # The decision facts (NULL in rows written before them): what ``controlplane.replay`` decides again.
    ("surface", "VARCHAR", lambda b, i, r: r.surface or "chat"),
    ("needs", "VARCHAR[]", lambda b, i, r: sorted(r.needs)),
    ("estimated_prompt_tokens", "BIGINT", lambda b, i, r: r.estimated_prompt_tokens),
    ("max_tokens", "BIGINT", lambda b, i, r: r.max_tokens if r.HasField("max_tokens") else None),
]
# Requests refused by policy (a record with ``refusal`` set): decisions without an upstream, kept apart from
# usage so that spend and request counts stay those of requests that reached an upstream.
_REFUSAL_COLUMNS: list[tuple[str, str, Callable[[upb.UsageBatch, int, upb.UsageRecord], Any]]] = [
    c for c in _COLUMNS if c[0] in (
        "node_id", "epoch", "sequence", "ordinal", "request_id", "ts", "tenant", "project", '"user"', "key_id",
        "route", "region", "snapshot_version", "status", "stream", "surface", "needs", "estimated_prompt_tokens",
        "max_tokens")
] + [("refusal", "VARCHAR", lambda b, i, r: r.refusal)]


def _insert_sql(table: str = "usage_events", columns: list[tuple[str, str, Any]] | None = None) -> str:
    columns = _COLUMNS if columns is None else columns
    names = ", ".join(name for name, _, _ in columns)
    values = ", ".join(
        f"epoch_ms(unnest(${n}::BIGINT[]))" if name == "ts" else f"unnest(${n}::{sql}[])"
        for n, (name, sql, _) in enumerate(columns, start=1)
    )
    return f"INSERT INTO {table} ({names}) SELECT {values}"


INSERT_EVENTS = _insert_sql()
INSERT_REFUSALS = _insert_sql("refusals", _REFUSAL_COLUMNS)

Dimension = Literal["tenant", "project", "user", "key", "route", "deployment", "provider", "region", "tag"]

# Dimension -> SQL expression; the only strings ever pasted into report SQL (values always go as parameters).
_DIMENSIONS: dict[str, str] = {
    "tenant": "tenant", "project": "project", "user": '"user"', "key": "key_id", "route": "route",
    "deployment": "deployment", "provider": "provider", "region": "region", "tag": "tag",
}


class UsageDBError(Exception):
    """The usage database failed; the batch was not stored (the data plane will resend it)."""


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group of a spend report: the grouped values (in ``by`` order) and the sums over its requests.

    Token kinds billed apart are parts of the totals, as in a usage record: cache reads and writes (both rates)
    of ``input_tokens``, reasoning of ``output_tokens``."""

    key: tuple[str, ...]
    requests: int
    input_tokens: int
    cached_input_tokens: int  # cache reads
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_pico: int  # exact


class UsageDB:
    """An open usage database. Create with ``await UsageDB.open(path)``; ``await close()`` when done.

    This class is the embedded engine (DuckDB, one machine) and the interface: ``PostgresUsageDB``
    (``controlplane.usage.postgres``, shared by control-plane replicas) overrides the engine's methods (opening,
    ``store_batch``, ``fetch``, ``reader``, ``delete_older_than``, ``close``). Every read query (``spend``,
    ``count_batches``, ``request_ids`` and the reports of ``controlplane.usage.analytics``) is written once
    through ``fetch``, in the SQL both engines speak: ``?`` parameters, ``epoch_ms(?)``, ``? = ANY(tags)``, named
    subqueries. A method added here that reaches DuckDB directly (``self._db``) must be overridden there too.

    Task-safe: calls from any number of tasks are serialized on the database's worker thread.
    """

    def __init__(self, executor: ThreadPoolExecutor, connection: duckdb.DuckDBPyConnection) -> None:
        self._executor = executor
        self._db = connection

    @classmethod
    async def open(cls, path: str | None) -> UsageDB:
        """Open (or create) the DuckDB file at ``path``; None keeps everything in memory."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-db")

        def connect() -> duckdb.DuckDBPyConnection:
            connection = duckdb.connect(path if path is not None else ":memory:")
            connection.execute(SCHEMA)
            connection.execute(MIGRATE)
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except duckdb.Error as e:
            executor.shutdown(wait=False)
            raise UsageDBError(f"cannot open the usage database: {e}") from e
        return cls(executor, connection)

    async def close(self) -> None:
        await self._run(self._db.close)
        await asyncio.to_thread(self._executor.shutdown, True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        except duckdb.Error as e:
            raise UsageDBError(str(e)) from e

    async def store_batch(self, batch: upb.UsageBatch) -> bool:
        """Store the batch's events and mark it stored, atomically. False if it was already stored."""
        return await self._run(self._store, batch)

    def _store(self, batch: upb.UsageBatch) -> bool:
        db = self._db
        db.execute("BEGIN TRANSACTION")
        try:
            seen = db.execute("SELECT 1 FROM batches WHERE node_id = ? AND epoch = ? AND sequence = ?",
                              [batch.node_id, batch.epoch, batch.sequence]).fetchone()
            if seen is not None:
                db.execute("ROLLBACK")
                return False
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, epoch_ms(?))",
                       [batch.node_id, batch.epoch, batch.sequence, len(batch.records), int(time.time() * 1000)])
            served = [(i, r) for i, r in enumerate(batch.records) if not r.refusal]
            if served:
                columns = [[get(batch, i, r) for i, r in served] for _, _, get in _COLUMNS]
                db.execute(INSERT_EVENTS, columns)
            if len(served) < len(batch.records):
                refused = [(i, r) for i, r in enumerate(batch.records) if r.refusal]
                db.execute(INSERT_REFUSALS, [[get(batch, i, r) for i, r in refused] for _, _, get in _REFUSAL_COLUMNS])
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def spend(
        self,
        by: Sequence[Dimension],
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        where: Mapping[Dimension, str] | None = None,
    ) -> list[SpendRow]:
        """Sums per group over requests in [since_ms, until_ms) (unix ms, either end open), biggest cost first.

        Grouping by ``tag`` counts a request once under each of its tags (and not at all if it has none).
        """
        if not by or any(d not in _DIMENSIONS for d in [*by, *(where or {})]):
            raise ValueError(f"dimensions must be among {sorted(_DIMENSIONS)}")
        keys = [_DIMENSIONS[d] for d in by]
        conditions: list[str] = ["TRUE"]
        params: list[int | str] = []
        if since_ms is not None:
            conditions.append("ts >= epoch_ms(?)")
            params.append(since_ms)
        if until_ms is not None:
            conditions.append("ts < epoch_ms(?)")
            params.append(until_ms)
        for dimension, value in (where or {}).items():
            conditions.append(f"{_DIMENSIONS[dimension]} = ?")
            params.append(value)
        source = "(SELECT *, unnest(tags) AS tag FROM usage_events) AS e" if "tag" in [*by, *(where or {})] \
            else "usage_events"
        group = ", ".join(keys)
        sums = ("count(*), sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens), sum(output_tokens), "
                "sum(reasoning_tokens), sum(cost_pico)")  # in SpendRow's field order
        sql = (f"SELECT {group}, {sums} FROM {source} WHERE {' AND '.join(conditions)} "
               f"GROUP BY {group} ORDER BY sum(cost_pico) DESC, {group}")
        rows = await self.fetch(sql, params)
        n = len(keys)
        return [SpendRow(tuple(str(v) for v in row[:n]), *(int(v) for v in row[n:])) for row in rows]

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query on the database's worker thread and return its rows: for reports that build their own
        SQL (``controlplane.usage.analytics``). Values must go in ``params``, never into ``sql``."""
        rows: list[tuple[Any, ...]] = await self._run(lambda: self._db.execute(sql, list(params)).fetchall())
        return rows

    async def reader(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the same database, for one other thread's long read (a replay): it
        sees what is committed, and never holds up this database's worker. The caller closes it."""
        def open_reader() -> duckdb.DuckDBPyConnection:
            reader = self._db.cursor()
            reader.execute("SET enable_progress_bar = false")  # a server's stdout is no terminal
            return reader

        return await self._run(open_reader)

    async def count_batches(self, node_id: str | None = None) -> int:
        """How many batches are stored (of one data plane, or of all)."""
        sql, params = "SELECT count(*) FROM batches", []
        if node_id is not None:
            sql, params = sql + " WHERE node_id = ?", [node_id]
        rows = await self.fetch(sql, params)
        return int(rows[0][0]) if rows else 0

    async def request_ids(self, since_ms: int | None = None) -> list[str]:
        """The request ids of the stored events (duplicates included), oldest first: for audits and tests."""
        sql, params = "SELECT request_id FROM usage_events", []
        if since_ms is not None:
            sql, params = sql + " WHERE ts >= epoch_ms(?)", [since_ms]
        rows = await self.fetch(sql + " ORDER BY ts, request_id", params)
        return [str(r[0]) for r in rows]

    async def delete_older_than(self, cutoffs_ms: Mapping[str, int], default_cutoff_ms: int, *,
                                fence: int = 0) -> int:
        """Retention: delete each tenant's events older than its cutoff (unix ms), and those of tenants not in
        ``cutoffs_ms`` older than ``default_cutoff_ms``, in one transaction. Returns how many were deleted.

        ``batches`` rows stay: they are what makes a replayed old batch a no-op (and are a few bytes each).
        ``fence``: the retention duty's fencing token (``controlplane.ha.election``); this file has one writer, so
        only the shared engine checks it (``controlplane.usage.postgres``)."""
        return await self._run(self._delete_older_than, dict(cutoffs_ms), default_cutoff_ms)

    def _delete_older_than(self, cutoffs_ms: dict[str, int], default_cutoff_ms: int) -> int:
        db = self._db
        tenants, cutoffs = list(cutoffs_ms), list(cutoffs_ms.values())
        db.execute("BEGIN TRANSACTION")
        try:
            # One pass over the table: each event's cutoff is its tenant's, or the default.
            row = db.execute(
                "DELETE FROM usage_events AS e WHERE e.ts < epoch_ms(coalesce("
                "(SELECT c.cutoff FROM (SELECT unnest($1::VARCHAR[]) AS tenant, unnest($2::BIGINT[]) AS cutoff) c "
                "WHERE c.tenant = e.tenant), $3::BIGINT))",
                [tenants, cutoffs, default_cutoff_ms]).fetchone()
            db.execute(  # refused requests' decisions age like usage (not counted: they are not usage)
                "DELETE FROM refusals AS e WHERE e.ts < epoch_ms(coalesce("
                "(SELECT c.cutoff FROM (SELECT unnest($1::VARCHAR[]) AS tenant, unnest($2::BIGINT[]) AS cutoff) c "
                "WHERE c.tenant = e.tenant), $3::BIGINT))",
                [tenants, cutoffs, default_cutoff_ms])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(row[0]) if row else 0
