"""The canary's traffic against the others' over a sliding window, from the usage events in DuckDB.

Errors are 5xx answers (the gateway's own failures, 502 and 504, among them) and requests with no status, over
all recorded requests. Usage arrives in batches from the data planes a few seconds late, so the window's newest
seconds are always incomplete on both sides alike; the comparison stays fair, and the automatic decision waits
for ``min_requests``.
"""

from __future__ import annotations

from collections.abc import Collection

from controlplane.rollout.verdict import Traffic
from controlplane.usage.db import UsageDB


async def traffic(db: UsageDB, canary_nodes: Collection[str], now: float, window_s: float) -> tuple[Traffic, Traffic]:
    """(canary, others) over the ``window_s`` seconds before ``now`` (unix seconds). A request belongs to the side
    of the data plane that served it (``node_id``), not to the region of the deployment it went to: a canary
    request that failed over to another region is still the canary's."""
    rows = await db.fetch(
        "SELECT node_id IN (SELECT unnest(?::VARCHAR[])) AS canary,"
        " count(*), count(*) FILTER (WHERE status >= 500 OR status = 0), median(latency_ms)"
        " FROM usage_events WHERE ts >= epoch_ms(?) GROUP BY canary",
        [sorted(canary_nodes) or [""], int((now - window_s) * 1000)])
    sides = {bool(row[0]): Traffic(int(row[1]), int(row[2]), None if row[3] is None else float(row[3]))
             for row in rows}
    return sides.get(True, Traffic()), sides.get(False, Traffic())
