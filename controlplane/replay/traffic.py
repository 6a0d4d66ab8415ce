"""Reading recorded traffic for a replay: the usage events and the refusals of a window, oldest first.

The SQL is over the usage schema (``controlplane.usage.db``, docs/usage-schema.md): ``usage_events`` (requests
that reached an upstream) and ``refusals`` (requests refused by policy), with the decision facts recorded for
both. Rows written before those facts existed read as chat requests with no needs and no ``max_tokens``.

Written once for both usage stores, in the dialect ``controlplane.usage`` shares (``UsageDB``): ``?``
parameters, ``epoch_ms``, named columns, an aliased subquery, no engine's own types or casts. What differs
between the engines stays in their readers: DuckDB's ``cursor()`` (``UsageDB.reader``), PostgreSQL's
``ReplayReader`` (a server-side cursor, one snapshot for every query of the replay). Needs are written sorted
(``db._COLUMNS``), so they are read as they are.

``read_traffic`` runs on a connection of its own, in the thread that replays, in chunks: a week of a large
organisation is millions of rows, never all in memory at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from controlplane.replay.simulate import Recorded
from tollway.budget_scopes import BudgetIndex, period_of

CHUNK = 20_000

_WINDOW = "ts >= epoch_ms(?) AND ts < epoch_ms(?)"
# The columns of ``Recorded``, in its order; then the record's place in its batch, for a total order.
_EVENTS = f"""
SELECT epoch_ms(ts) AS ms, region, tenant, project, "user", key_id, route, coalesce(surface, 'chat') AS surface,
       coalesce(array_to_string(needs, ','), '') AS needs,
       coalesce(estimated_prompt_tokens, 0) AS estimated_prompt_tokens, max_tokens, stream, deployment,
       '' AS refusal, input_tokens, cached_input_tokens, coalesce(cache_write_tokens, 0) AS cache_write_tokens,
       output_tokens, coalesce(reasoning_tokens, 0) AS reasoning_tokens, node_id, epoch, sequence, ordinal
FROM usage_events WHERE {_WINDOW}
"""
_REFUSALS = f"""
SELECT epoch_ms(ts), region, tenant, project, "user", key_id, route, surface,
       coalesce(array_to_string(needs, ','), ''), estimated_prompt_tokens, max_tokens, stream, '',
       refusal, 0, 0, 0, 0, 0, node_id, epoch, sequence, ordinal
FROM refusals WHERE {_WINDOW}
"""
# A total order (time, then the record's place in its batch), so a replay is deterministic for a given window
# (and policy pair, and seed); the ordering columns are not returned.
TRAFFIC_SQL = (
    'SELECT ms, region, tenant, project, "user", key_id, route, surface, needs, estimated_prompt_tokens, '
    "max_tokens, stream, deployment, refusal, input_tokens, cached_input_tokens, cache_write_tokens, "
    f"output_tokens, reasoning_tokens FROM ({_EVENTS} UNION ALL {_REFUSALS}) AS traffic "
    "ORDER BY ms, node_id, epoch, sequence, ordinal")
COUNT_SQL = (f"SELECT (SELECT count(*) FROM usage_events WHERE {_WINDOW}) + "
             f"(SELECT count(*) FROM refusals WHERE {_WINDOW}) AS requests")
# Spend before the window, in the window's first month, per (tenant, project, key, user): where budgets start.
SPENT_SQL = f"""
SELECT tenant, project, key_id, "user", sum(coalesce(cost_pico, 0)) AS cost_pico FROM usage_events
WHERE {_WINDOW} GROUP BY tenant, project, key_id, "user"
"""


class Connection(Protocol):
    """What a replay needs of a database connection: DuckDB's, or PostgreSQL's ``ReplayReader`` (both take the
    shared dialect's ``?`` parameters). ``execute`` answers a cursor with ``fetchone``, ``fetchmany`` and
    ``fetchall``."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...


def count_traffic(db: Connection, since_ms: int, until_ms: int) -> int:
    row = db.execute(COUNT_SQL, [since_ms, until_ms] * 2).fetchone()
    return int(row[0]) if row else 0


def read_traffic(db: Connection, since_ms: int, until_ms: int, chunk: int = CHUNK) -> Iterator[Recorded]:
    """The window's recorded requests, oldest first (ties in a fixed order)."""
    cursor = db.execute(TRAFFIC_SQL, [since_ms, until_ms] * 2)
    make = Recorded._make
    while rows := cursor.fetchmany(chunk):
        yield from map(make, rows)


def month_start_ms(unix_ms: int) -> int:
    at = datetime.fromtimestamp(unix_ms / 1000, UTC)
    return int(datetime(at.year, at.month, 1, tzinfo=UTC).timestamp() * 1000)


SpendGroups = list[tuple[str, str, str, str, int]]


def spend_before(db: Connection, since_ms: int) -> SpendGroups:
    """What was spent in the window's first month before the window, per (tenant, project, key, user). Sums
    are exact (DuckDB's HUGEINT, PostgreSQL's NUMERIC, read as ``Decimal``): ``int`` of either."""
    rows = db.execute(SPENT_SQL, [month_start_ms(since_ms), since_ms]).fetchall()
    return [(str(t), str(p), str(k), str(u), int(c)) for t, p, k, u, c in rows]


def spent_by_scope(groups: SpendGroups, index: BudgetIndex, since_ms: int) -> Mapping[tuple[str, str], int]:
    """``groups`` summed into the budget scopes ``index`` (one policy's budgets) charges them to."""
    period = period_of(since_ms / 1000)
    out: dict[tuple[str, str], int] = defaultdict(int)
    for tenant, project, key_id, user, cost in groups:
        for s in index.scopes_for(tenant, project, key_id, user):
            out[(s.name, period)] += cost
    return out
