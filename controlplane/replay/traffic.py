"""Reading recorded traffic for a replay: the usage events and the refusals of a window, oldest first.

The SQL is over the usage schema (``controlplane.usage.db``, docs/usage-schema.md): ``usage_events`` (requests
that reached an upstream) and ``refusals`` (requests refused by policy), with the decision facts recorded for
both. Rows written before those facts existed read as chat requests with no needs and no ``max_tokens``.

``read_traffic`` runs on a connection of its own (a DuckDB ``cursor()`` of the usage database), in the thread
that replays, in chunks: a week of a large organisation is millions of rows, never all in memory at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from controlplane.replay.simulate import Recorded
from tollway.budget_scopes import BudgetIndex, period_of

CHUNK = 20_000

_EVENTS = """
SELECT epoch_ms(ts) AS ms, region, tenant, project, "user", key_id, route, coalesce(surface, 'chat'),
       array_to_string(list_sort(coalesce(needs, []::VARCHAR[])), ','), coalesce(estimated_prompt_tokens, 0),
       max_tokens, stream, deployment, '', input_tokens, cached_input_tokens, coalesce(cache_write_tokens, 0),
       output_tokens, coalesce(reasoning_tokens, 0), coalesce(cost_pico, 0), node_id, epoch, sequence, ordinal
FROM usage_events WHERE ts >= epoch_ms($1) AND ts < epoch_ms($2)
"""
_REFUSALS = """
SELECT epoch_ms(ts) AS ms, region, tenant, project, "user", key_id, route, surface,
       array_to_string(list_sort(needs), ','), estimated_prompt_tokens, max_tokens, stream, '', refusal,
       0, 0, 0, 0, 0, 0::HUGEINT, node_id, epoch, sequence, ordinal
FROM refusals WHERE ts >= epoch_ms($1) AND ts < epoch_ms($2)
"""
# A total order (time, then the record's place in its batch), so a replay is deterministic for a given window
# (and policy pair, and seed); the ordering columns are not returned.
_COLUMNS = ", ".join(f"#{i}" for i in range(1, 21))
TRAFFIC_SQL = f"SELECT {_COLUMNS} FROM ({_EVENTS} UNION ALL {_REFUSALS}) ORDER BY ms, node_id, epoch, sequence, ordinal"
COUNT_SQL = ("SELECT (SELECT count(*) FROM usage_events WHERE ts >= epoch_ms($1) AND ts < epoch_ms($2)) + "
             "(SELECT count(*) FROM refusals WHERE ts >= epoch_ms($1) AND ts < epoch_ms($2))")
# Spend before the window, in the window's first month, per (tenant, project, key, user): where budgets start.
SPENT_SQL = """
SELECT tenant, project, key_id, "user", sum(coalesce(cost_pico, 0)) FROM usage_events
WHERE ts >= epoch_ms($1) AND ts < epoch_ms($2) GROUP BY tenant, project, key_id, "user"
"""


class Connection(Protocol):
    """What a replay needs of a database connection (DuckDB's, or a DB-API one that speaks this SQL)."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...


def count_traffic(db: Connection, since_ms: int, until_ms: int) -> int:
    row = db.execute(COUNT_SQL, [since_ms, until_ms]).fetchone()
    return int(row[0]) if row else 0


def read_traffic(db: Connection, since_ms: int, until_ms: int, chunk: int = CHUNK) -> Iterator[Recorded]:
    """The window's recorded requests, oldest first (ties in a fixed order)."""
    cursor = db.execute(TRAFFIC_SQL, [since_ms, until_ms])
    make = Recorded._make
    while rows := cursor.fetchmany(chunk):
        yield from map(make, rows)


def month_start_ms(unix_ms: int) -> int:
    at = datetime.fromtimestamp(unix_ms / 1000, UTC)
    return int(datetime(at.year, at.month, 1, tzinfo=UTC).timestamp() * 1000)


SpendGroups = list[tuple[str, str, str, str, int]]


def spend_before(db: Connection, since_ms: int) -> SpendGroups:
    """What was spent in the window's first month before the window, per (tenant, project, key, user)."""
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
