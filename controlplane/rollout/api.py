"""The admin API of staged rollouts (docs/admin-api.md), a thin shell over ``RolloutManager``:

- ``GET /admin/v1/rollout``: the active rollout (or null), per region and data plane the version it should run
  and the one it runs with ACK/NACK, and the canary's traffic against the others' (``gatectl rollout status``).
- ``POST /admin/v1/rollout``: ``{"documents", "canary", "promoteAfter"?, "abortIf"?, "who"?,
  "expectedRevision"?}`` applies the documents as a new generation that only the canary runs (201).
- ``POST /admin/v1/rollout/promote`` and ``/abort``: ``{"who"?, "reason"?}``.

Errors are those of ``controlplane.admin.api`` (the middleware there renders them): a second rollout or a policy
write during one is 409 ``rollout_in_progress``; promote/abort with none active 404.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from controlplane.errors import InvalidRequest
from controlplane.policy.engine import Document
from controlplane.rollout.manager import RolloutManager
from controlplane.rollout.state import Rollout, parse_abort_rule, parse_canary, parse_duration

MANAGER = web.AppKey("rollouts", RolloutManager)


def add_rollout_routes(app: web.Application, manager: RolloutManager) -> None:
    app[MANAGER] = manager
    app.router.add_get("/admin/v1/rollout", _status)
    app.router.add_post("/admin/v1/rollout", _start)
    app.router.add_post("/admin/v1/rollout/promote", _promote)
    app.router.add_post("/admin/v1/rollout/abort", _abort)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name!r} must be a string")
    return value


def _who(body: dict[str, Any]) -> str:
    return _text(body, "who") or "unknown"


async def _status(request: web.Request) -> web.Response:
    return _json(await request.app[MANAGER].status())


async def _start(request: web.Request) -> web.Response:
    body = await _body(request)
    canary = _text(body, "canary")
    if not canary:
        raise InvalidRequest("'canary' is required (REGION, region=REGION or dataplane=NAME)")
    after, rule = _text(body, "promoteAfter"), _text(body, "abortIf")
    expected = body.get("expectedRevision")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)):
        raise InvalidRequest("'expectedRevision' must be a generation number")
    raw = body.get("documents")
    if not isinstance(raw, list):
        raise InvalidRequest("'documents' must be a list")
    documents = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "document" not in item:
            raise InvalidRequest(f"documents[{i}] must be an object with 'source' and 'document'")
        documents.append(Document(str(item.get("source") or f"documents[{i}]"), item["document"]))
    result, rollout = await request.app[MANAGER].start(
        documents, who=_who(body), canary=parse_canary(canary),
        promote_after_s=parse_duration(after) if after else None,
        abort_above=parse_abort_rule(rule) if rule else None, expected_revision=expected)
    return _json({**result.to_json(), "rollout": rollout.to_json()}, status=201)


async def _promote(request: web.Request) -> web.Response:
    body = await _body(request)
    return _done(await request.app[MANAGER].promote(_who(body), _text(body, "reason") or ""))


async def _abort(request: web.Request) -> web.Response:
    body = await _body(request)
    return _done(await request.app[MANAGER].abort(_who(body), _text(body, "reason") or ""))


def _done(rollout: Rollout) -> web.Response:
    return _json({"rollout": rollout.to_json()})
