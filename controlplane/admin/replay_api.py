"""``POST /admin/v1/replay``: replay recorded traffic through the current policy and the one these documents make.

Body: ``/admin/v1/plan``'s (``{"documents": [...]}``, validated as an apply would: 422 ``invalid_policy``), plus
``sinceMs`` (required: the window's start, unix milliseconds), ``untilMs`` (default: now) and ``seed`` (weighted
routes' draws; default 0). Nothing is written.

The answer streams as NDJSON (``application/x-ndjson``), so a terminal can show progress through millions of
requests: first ``{"total": N}``, then ``{"done": n}`` every ``controlplane.replay.report.PROGRESS_EVERY``
requests, and last ``{"report": {...}}`` (``controlplane.replay.report``) — or ``{"error": {...}}`` if the replay
failed once started. Errors before the stream starts are the admin API's usual JSON errors.

The replay is CPU-bound (seconds to a minute): it runs on a worker thread with a database connection of its own
(``UsageDB.reader``), so neither the event loop nor usage ingestion waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from controlplane.admin.plan_api import proposal_for
from controlplane.errors import InvalidRequest
from controlplane.replay.report import replay
from controlplane.replay.traffic import count_traffic, read_traffic, spend_before, spent_by_scope
from controlplane.usage.db import UsageDB
from tollway.pb import snapshot_pb2 as pb

log = logging.getLogger(__name__)

REPLAY_DB = web.AppKey("replay_usage_db", UsageDB)


def add_replay_routes(app: web.Application, usage_db: UsageDB) -> None:
    app[REPLAY_DB] = usage_db
    app.router.add_post("/admin/v1/replay", _replay)


def _int_field(body: dict[str, Any], name: str, default: int | None) -> int:
    value = body.get(name, default)
    if value is None:
        raise InvalidRequest(f"{name!r} is required (unix milliseconds)")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(f"{name!r} must be a non-negative integer")
    return value


async def _replay(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    since_ms = _int_field(body, "sinceMs", None)
    until_ms = _int_field(body, "untilMs", int(time.time() * 1000))
    seed = _int_field(body, "seed", 0)
    if until_ms <= since_ms:
        raise InvalidRequest("'untilMs' must be after 'sinceMs'")
    proposal = await proposal_for(request)
    empty = pb.Snapshot()

    def snapshots(region: str) -> tuple[pb.Snapshot, pb.Snapshot]:
        return proposal.current.get(region, empty), proposal.proposed.get(region, empty)

    db = await request.app[REPLAY_DB].reader()
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def send(item: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, orjson.dumps(item) + b"\n")

    def run() -> None:
        try:
            send({"total": count_traffic(db, since_ms, until_ms)})
            groups = spend_before(db, since_ms)
            report = replay(read_traffic(db, since_ms, until_ms), snapshots,
                            lambda index: spent_by_scope(groups, index, since_ms), since_ms, until_ms, seed,
                            lambda done: send({"done": done}))
            send({"report": report})
        except Exception as e:  # the thread's top: the client gets the error as the stream's last line
            log.exception("replay failed")
            send({"error": {"message": f"the replay failed: {e}", "type": "internal_error"}})
        finally:
            db.close()
            loop.call_soon_threadsafe(lines.put_nowait, None)

    worker = loop.run_in_executor(None, run)
    while (line := await lines.get()) is not None:
        await response.write(line)
    await worker
    await response.write_eof()
    return response
