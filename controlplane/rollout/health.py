"""The canary's traffic against the others' over a sliding window, from the usage store (DuckDB or PostgreSQL:
the query is in the dialect both speak).

A request is every one the data planes recorded: those that reached an upstream (``usage_events``) and those
refused by policy (``refusals``). An error is a 5xx answer or a gateway error: a request answered 5xx (the
gateway's own 502 and 504 among them), one with no status, and one whose upstream failed or timed out
(``error_type`` ``upstream_error`` or ``upstream_timeout``). A refusal by policy (4xx) is a request, not an
error; a stream the client abandoned is neither. Latency is the median of the requests that succeeded (a fast
failure says nothing of it).

Usage arrives in batches from the data planes a few seconds late, so the window's newest seconds are always
incomplete on both sides alike; the comparison stays fair, and the automatic decision waits for
``min_requests``.
"""

from __future__ import annotations

from collections.abc import Collection

from controlplane.rollout.verdict import Traffic
from controlplane.usage.db import UsageDB

_IS_ERROR = "(status >= 500 OR status = 0 OR error_type IN ('upstream_error', 'upstream_timeout'))"

_QUERY = (
    "SELECT node_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) AS canary, count(*),"
    f" count(*) FILTER (WHERE {_IS_ERROR}),"
    f" percentile_cont(0.5) WITHIN GROUP (ORDER BY CASE WHEN NOT {_IS_ERROR} AND status < 400 THEN latency_ms END)"
    " FROM (SELECT node_id, ts, status, error_type, latency_ms FROM usage_events"
    "       UNION ALL SELECT node_id, ts, status, '' AS error_type, NULL AS latency_ms FROM refusals) AS requests"
    " WHERE ts >= epoch_ms(?) GROUP BY canary")


async def traffic(db: UsageDB, canary_nodes: Collection[str], since: float) -> tuple[Traffic, Traffic]:
    """(canary, others) since ``since`` (unix seconds). A request belongs to the side of the data plane that
    served it (``node_id``), not to the region of the deployment it went to: a canary request that failed over
    to another region is still the canary's."""
    rows = await db.fetch(_QUERY, [sorted(canary_nodes) or [""], int(since * 1000)])
    sides = {bool(row[0]): Traffic(int(row[1]), int(row[2]), None if row[3] is None else float(row[3]))
             for row in rows}
    return sides.get(True, Traffic()), sides.get(False, Traffic())
