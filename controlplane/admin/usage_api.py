"""``GET /admin/v1/usage``: spend against budget by tenant, project, user, model, tag for a period.

Query: ``by=tenant,project`` (dimensions of ``controlplane.usage.db.Dimension``), ``since``/``until`` (ISO
dates or times, UTC; default: the current calendar month), and ``tenant=``/``project=``/... filters. Answers
``{"since", "until", "by", "rows": [{"group": {...}, "requests", "inputTokens", "cachedInputTokens",
"cacheWriteTokens", "outputTokens", "reasoningTokens", "costMicros", "costPico", "costUsd"}]}``. Every token kind
billed apart is there, each a part of its total as in a usage record: cache reads (``cachedInputTokens``) and
writes of ``inputTokens``, reasoning of ``outputTokens``. Money is exact: ``costPico`` is integer pico-dollars as a
string (it may exceed what a JSON number holds exactly), ``costUsd`` a decimal string, ``costMicros`` rounded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast, get_args

import orjson
from aiohttp import web

from controlplane.errors import InvalidRequest
from controlplane.usage.analytics import parse_time
from controlplane.usage.db import Dimension, UsageDB
from tollway.money import micros_rounded, usd

USAGE_DB = web.AppKey("usage_db", UsageDB)
DIMENSIONS: tuple[str, ...] = get_args(Dimension)


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def usage(request: web.Request) -> web.Response:
    q = request.query
    by = [d.strip() for d in q.get("by", "tenant").split(",") if d.strip()]
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or not by:
        raise InvalidRequest(f"by: unknown dimension(s) {unknown}; choose from {', '.join(DIMENSIONS)}")
    now = datetime.now(UTC)
    since = parse_time(q["since"], "since") if "since" in q else month_start(now)
    until = parse_time(q["until"], "until") if "until" in q else None
    where = {cast(Dimension, d): q[d] for d in DIMENSIONS if d in q}
    rows = await request.app[USAGE_DB].spend(
        [cast(Dimension, d) for d in by], since_ms=int(since.timestamp() * 1000),
        until_ms=int(until.timestamp() * 1000) if until else None, where=where,
    )
    body = {
        "since": since.isoformat(), "until": until.isoformat() if until else None, "by": by,
        "rows": [
            {"group": dict(zip(by, row.key, strict=True)), "requests": row.requests,
             "inputTokens": row.input_tokens, "cachedInputTokens": row.cached_input_tokens,
             "cacheWriteTokens": row.cache_write_tokens, "outputTokens": row.output_tokens,
             "reasoningTokens": row.reasoning_tokens, "costMicros": micros_rounded(row.cost_pico),
             "costPico": str(row.cost_pico), "costUsd": usd(row.cost_pico)}
            for row in rows
        ],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_usage_routes(app: web.Application, db: UsageDB) -> None:
    app[USAGE_DB] = db
    app.router.add_get("/admin/v1/usage", usage)
