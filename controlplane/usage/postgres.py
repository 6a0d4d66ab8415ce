"""Usage events in PostgreSQL: the usage store that several control-plane replicas share.

Why PostgreSQL: usage is append-mostly rows (one per request) read by aggregate reports, and with several
replicas every one of them must write and read the same rows and check a batch's idempotency key against the same
state. PostgreSQL is a long-kept engine made for exactly that (concurrent writers, unique keys checked under
transactions, aggregates and ordered-set quantiles), Debian packages it, and its SQL is close enough to DuckDB's
that the reports are written once (``controlplane.usage.analytics``). etcd is for small, consistent state, not
millions of rows; DuckDB is one process's embedded file.

The schema is not written here: it is translated from the one definition in ``controlplane.usage.db``
(``SCHEMA``, DuckDB's DDL), table by table and column by column (``schema_sql``), so a column added there reaches
PostgreSQL too (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` on a database created before it). Text is
``COLLATE "C"``, so reports sort groups byte-wise as DuckDB does, whatever the database's locale. SQL functions
(``FUNCTIONS``) make the shared dialect PostgreSQL's as well: ``epoch_ms`` (unix ms <-> UTC TIMESTAMP, as in
DuckDB) and ``list_sort``; ``?`` and ``$n`` placeholders become ``%s`` (``to_pyformat``). Timestamps are UTC
``TIMESTAMP`` (without time zone), as in DuckDB, so no session time zone shifts a day.

Exactly once: a batch's key (node_id, epoch, sequence) is the primary key of ``batches``; storing a batch is one
transaction that inserts that row (``ON CONFLICT DO NOTHING``) and, only if it was new, the batch's rows. Two
replicas given the same batch at once: the second waits on the key until the first commits, then finds it.

Connections: one for writes (batches, retention), one for reads (reports), each used by one task at a time, so a
long report never delays acknowledging usage. A connection that broke (server restarted, network) is replaced on
the next call; the call that met the break fails with ``UsageDBError`` (the data plane resends its batch).
Credentials: the URL's password (better: ``PGPASSWORD`` or ``~/.pgpass``, which libpq reads) never appears in an
error or a log line (``redact``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from controlplane.usage.db import _COLUMNS, _REFUSAL_COLUMNS, SCHEMA, UsageDB, UsageDBError
from tollway.pb import usage_pb2 as upb

# DuckDB type -> PostgreSQL type. Unsigned and 128-bit integers become exact NUMERICs (psycopg reads them as
# ``Decimal``; every reader converts with ``int``).
TYPES: dict[str, str] = {
    "VARCHAR": 'TEXT COLLATE "C"', "VARCHAR[]": 'TEXT[] COLLATE "C"', "BOOLEAN": "BOOLEAN",
    "SMALLINT": "SMALLINT", "INTEGER": "INTEGER", "BIGINT": "BIGINT", "UINTEGER": "BIGINT",
    "UBIGINT": "NUMERIC(20, 0)", "HUGEINT": "NUMERIC(39, 0)", "DOUBLE": "DOUBLE PRECISION", "REAL": "REAL",
    "DATE": "DATE", "TIMESTAMP": "TIMESTAMP", "BIGINT[]": "BIGINT[]",
}
# DuckDB's functions the shared SQL uses, for PostgreSQL: unix ms <-> TIMESTAMP (UTC), and a sorted array.
FUNCTIONS = """
CREATE OR REPLACE FUNCTION epoch_ms(ms BIGINT) RETURNS TIMESTAMP LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT TIMESTAMP '1970-01-01' + ms * INTERVAL '1 millisecond' $$;
CREATE OR REPLACE FUNCTION epoch_ms(at TIMESTAMP) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CAST(extract(epoch FROM at) * 1000 AS BIGINT) $$;
CREATE OR REPLACE FUNCTION list_sort(items ANYARRAY) RETURNS ANYARRAY LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(array_agg(item ORDER BY item), items[0:0]) FROM unnest(items) AS item $$;
"""
# Fencing tokens of the singleton duties that write here (``controlplane.ha.election``): per duty, the newest
# election revision that wrote. Not in ``db.SCHEMA``: one DuckDB file has one writer and needs none.
FENCE_TABLE = "duty_fences"
FENCES = f"""
CREATE TABLE IF NOT EXISTS {FENCE_TABLE} (duty TEXT COLLATE "C" PRIMARY KEY, revision BIGINT NOT NULL);
"""
RETENTION_DUTY = "usage-retention"
# Serializes schema changes between replicas starting at once (CREATE ... IF NOT EXISTS races otherwise).
_SCHEMA_LOCK = 0x546F6C6C776179  # "Tollway"
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", re.S)
_COLUMN = re.compile(r'("?\w+"?)\s+([A-Z]+(?:\[\])?)(\s+NOT NULL)?$')
_EPOCH = datetime(1970, 1, 1)
_NUMBERED = re.compile(r"\$(\d+)")


def tables() -> dict[str, list[tuple[str, str, bool]]]:
    """The tables of ``db.SCHEMA``: name -> [(column, DuckDB type, not null)], primary keys left out."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    for name, body in _TABLE.findall(SCHEMA):
        columns = out.setdefault(name, [])
        for line in body.splitlines():
            line = line.strip().rstrip(",")
            if not line or line.startswith("PRIMARY KEY"):
                continue
            match = _COLUMN.match(line)
            if match is None:
                raise UsageDBError(f"usage schema: cannot read the column definition {line!r} of table {name}")
            columns.append((match[1], match[2], bool(match[3])))
    return out


def _pg_type(table: str, column: str, duck: str) -> str:
    if duck not in TYPES:
        raise UsageDBError(f"usage schema: {table}.{column} has type {duck}, which has no PostgreSQL type here "
                           "(add it to controlplane.usage.postgres.TYPES)")
    return TYPES[duck]


def schema_sql() -> str:
    """``db.SCHEMA`` in PostgreSQL: the tables, then every column again for databases created before it."""
    statements = []
    for name, body in _TABLE.findall(SCHEMA):
        lines = []
        for line in body.splitlines():
            line = line.strip().rstrip(",")
            if not line:
                continue
            match = _COLUMN.match(line)
            if match is None:
                lines.append(line)  # PRIMARY KEY (...): the same in both
                continue
            lines.append(f"{match[1]} {_pg_type(name, match[1], match[2])}{match[3] or ''}")
        statements.append(f"CREATE TABLE IF NOT EXISTS {name} (\n    " + ",\n    ".join(lines) + "\n);")
    for name, columns in tables().items():
        statements += [f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {column} {_pg_type(name, column, duck)};"
                       for column, duck, _ in columns]
        if any(column == "ts" for column, _, _ in columns):
            # Rows arrive roughly in time order and are rarely updated: a BRIN index is tiny and serves the reports'
            # time ranges and retention's deletes.
            statements.append(f"CREATE INDEX IF NOT EXISTS {name}_ts ON {name} USING brin (ts);")
    return FUNCTIONS + FENCES + "\n".join(statements)


def to_pyformat(sql: str) -> str:
    """The shared dialect's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled). The shared SQL never
    has a ``?`` inside a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


def numbered_to_pyformat(sql: str, params: Sequence[object]) -> tuple[str, list[object]]:
    """``$1``-style placeholders (each may appear several times) as ``%s``, with the parameters in their order;
    SQL without them goes through ``to_pyformat``."""
    order: list[int] = []

    def place(match: re.Match[str]) -> str:
        order.append(int(match[1]) - 1)
        return "%s"

    converted = _NUMBERED.sub(place, sql.replace("%", "%%"))
    if not order:
        return to_pyformat(sql), list(params)
    return converted, [params[i] for i in order]


def redact(url: str) -> str:
    """The URL without its password: what logs and errors may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _value(name: str, value: Any) -> Any:
    return _EPOCH + timedelta(milliseconds=value) if name == "ts" else value


class _Connection:
    """One psycopg connection used by one task at a time, reopened when it broke."""

    def __init__(self, url: str, connection: psycopg.AsyncConnection[Any]) -> None:
        self._url = url
        self._connection = connection
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def use(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._lock:
            try:
                if self._connection.closed or self._connection.broken:
                    self._connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                yield self._connection
            except psycopg.Error as e:
                raise UsageDBError(_message(e)) from e

    async def close(self) -> None:
        async with self._lock:
            await self._connection.close()


class FencedOut(UsageDBError):
    """A singleton duty's write refused: its fencing token is older than one the database has seen."""


def _message(e: psycopg.Error) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class ReplayReader:
    """A blocking connection for one thread (the DB-API shape ``controlplane.replay.traffic`` reads through). Each
    ``execute`` opens a server-side cursor, so ``fetchmany`` streams a window of millions of rows in chunks; all of
    them read one snapshot (one transaction, rolled back by ``close``)."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection
        self._cursors = 0

    @classmethod
    def open(cls, url: str) -> ReplayReader:
        connection = psycopg.connect(url)
        connection.read_only = True
        # One snapshot for the transaction (READ COMMITTED would take one per statement): the count, the spend
        # before the window and the rows all agree while data planes keep reporting.
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        return cls(connection)

    def execute(self, sql: str, params: Sequence[object] = ()) -> psycopg.ServerCursor[Any]:
        self._cursors += 1
        cursor = self._connection.cursor(name=f"replay_{self._cursors}")
        query, values = numbered_to_pyformat(sql, params)
        try:
            cursor.execute(query, values)
        except psycopg.Error as e:
            raise UsageDBError(_message(e)) from e
        return cursor

    def close(self) -> None:
        self._connection.close()


class PostgresUsageDB(UsageDB):
    """A usage database in PostgreSQL. Create with ``await PostgresUsageDB.connect(url)``; ``await close()``.

    Task-safe: writes go one at a time over one connection, reads one at a time over another."""

    def __init__(self, url: str, writer: _Connection, reader: _Connection) -> None:
        self._url = url
        self._writer = writer
        self._reader = reader

    @classmethod
    async def connect(cls, url: str) -> PostgresUsageDB:
        """Connect to ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` and create or extend the schema."""
        try:
            schema = schema_sql()
            writer = await psycopg.AsyncConnection.connect(url, autocommit=True)
            try:
                async with writer.transaction():
                    await writer.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                    await writer.execute(schema)
                reader = await psycopg.AsyncConnection.connect(url, autocommit=True)
            except BaseException:
                await writer.close()
                raise
        except psycopg.Error as e:
            raise UsageDBError(f"cannot open the usage database {redact(url)}: {_message(e)}") from e
        return cls(url, _Connection(url, writer), _Connection(url, reader))

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    async def reader(self) -> ReplayReader:  # type: ignore[override]
        """A connection of its own, for one other thread's long read (a replay), as ``UsageDB.reader``: its
        ``execute`` streams rows through a server-side cursor. The caller closes it."""
        try:
            return await asyncio.to_thread(ReplayReader.open, self._url)
        except psycopg.Error as e:
            raise UsageDBError(_message(e)) from e

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query of the shared dialect (``?`` parameters) and return its rows."""
        async with self._reader.use() as connection:
            cursor = await connection.execute(to_pyformat(sql), list(params))
            return await cursor.fetchall()

    async def store_batch(self, batch: upb.UsageBatch) -> bool:
        """Store the batch's rows and its key, in one transaction. False if the key was there (nothing written)."""
        served = [(i, r) for i, r in enumerate(batch.records) if not r.refusal]  # as UsageDB._store splits them
        refused = [(i, r) for i, r in enumerate(batch.records) if r.refusal]
        async with self._writer.use() as connection, connection.transaction():
            cursor = await connection.execute(
                "INSERT INTO batches (node_id, epoch, sequence, records, received_at) "
                "VALUES (%s, %s, %s, %s, epoch_ms(%s)) ON CONFLICT DO NOTHING",
                [batch.node_id, batch.epoch, batch.sequence, len(batch.records), int(time.time() * 1000)])
            if cursor.rowcount == 0:
                return False
            for table, columns, records in (("usage_events", _COLUMNS, served),
                                            ("refusals", _REFUSAL_COLUMNS, refused)):
                if not records:
                    continue
                names = ", ".join(name for name, _, _ in columns)
                async with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for i, r in records:
                        await copy.write_row([_value(name, get(batch, i, r)) for name, _, get in columns])
            return True

    async def delete_older_than(self, cutoffs_ms: Mapping[str, int], default_cutoff_ms: int, *,
                                fence: int = 0) -> int:
        """As ``UsageDB.delete_older_than``, over every table with a tenant and a time (usage events, refusals);
        returns how many usage events were deleted.

        ``fence`` (not 0): the retention duty's fencing token, the election's revision. The transaction first
        records it for the duty, and only if no newer one is recorded; otherwise it deletes nothing and raises
        ``FencedOut``: a replica that lost the duty cannot delete with its older view of the policy once the new
        holder has run. The row it updates also serializes two replicas' runs."""
        values = ", ".join("(CAST(%s AS TEXT), CAST(%s AS BIGINT))" for _ in cutoffs_ms)
        pairs: list[object] = [v for item in cutoffs_ms.items() for v in item]
        statements: list[tuple[str, list[object]]] = []
        if cutoffs_ms:
            given = f"(VALUES {values}) AS c(tenant, cutoff)"
            statements = [
                (f"USING {given} WHERE e.tenant = c.tenant AND e.ts < epoch_ms(c.cutoff)", pairs),
                (f"WHERE e.ts < epoch_ms(%s) AND e.tenant NOT IN (SELECT tenant FROM {given})",
                 [default_cutoff_ms, *pairs]),
            ]
        else:
            statements = [("WHERE e.ts < epoch_ms(%s)", [default_cutoff_ms])]
        if fence < 0:
            raise FencedOut(f"{RETENTION_DUTY}: this replica does not hold the duty")
        deleted = 0
        async with self._writer.use() as connection, connection.transaction():
            if fence:
                cursor = await connection.execute(
                    "INSERT INTO duty_fences (duty, revision) VALUES (%s, %s) ON CONFLICT (duty) DO UPDATE "
                    "SET revision = EXCLUDED.revision WHERE duty_fences.revision <= EXCLUDED.revision",
                    [RETENTION_DUTY, fence])
                if cursor.rowcount == 0:
                    raise FencedOut(f"{RETENTION_DUTY}: a newer holder of the duty has run (token {fence} is stale)")
            for table, columns in tables().items():
                if not {"tenant", "ts"} <= {name for name, _, _ in columns}:
                    continue
                for condition, params in statements:
                    cursor = await connection.execute(f"DELETE FROM {table} AS e {condition}", params)
                    deleted += cursor.rowcount if table == "usage_events" else 0
        return deleted
