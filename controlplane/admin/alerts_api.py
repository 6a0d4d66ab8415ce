"""``GET /admin/v1/alerts``: the alert events the control plane recorded, newest first (``gatectl alerts``).

Query: ``tenant``, ``kind`` (``budget.soft_threshold``, ``budget.exhausted``, ``ratelimit.refusing``), ``state``
(``pending``, ``delivered``, ``failed``, ``none``: no webhook subscribed), ``limit`` (default 100). Answers
``{"items": [{"id", "time", "kind", "tenant", "project", "scope", "period", "state", "attempts", "details",
"deliveries": [{"webhook", "state", "attempts", "lastError", "deliveredAt"}]}]}``. Webhooks appear by name: their
URLs and secrets never do.
"""

from __future__ import annotations

from typing import Protocol

import orjson
from aiohttp import web

from controlplane.alerts.events import AlertEvent
from controlplane.errors import InvalidRequest, is_count
from controlplane.policy.resources import ALERT_KINDS

STATES = ("pending", "delivered", "failed", "none")
DEFAULT_LIMIT = 100


class AlertSource(Protocol):
    async def events(self) -> list[AlertEvent]: ...


ALERTS = web.AppKey("alerts", AlertSource)


def add_alert_routes(app: web.Application, source: AlertSource) -> None:
    app[ALERTS] = source
    app.router.add_get("/admin/v1/alerts", _alerts)


async def _alerts(request: web.Request) -> web.Response:
    q = request.query
    limit = q.get("limit")
    if limit is not None and not is_count(limit):
        raise InvalidRequest("'limit' must be a positive number")
    kind, state, tenant = q.get("kind"), q.get("state"), q.get("tenant")
    if kind is not None and kind not in ALERT_KINDS:
        raise InvalidRequest(f"'kind' must be one of {', '.join(ALERT_KINDS)}")
    if state is not None and state not in STATES:
        raise InvalidRequest(f"'state' must be one of {', '.join(STATES)}")
    events = [e for e in await request.app[ALERTS].events()
              if (kind is None or e.kind == kind) and (state is None or e.state == state)
              and (tenant is None or e.tenant == tenant)]
    items = [e.to_api() for e in events[:int(limit) if limit is not None else DEFAULT_LIMIT]]
    return web.Response(body=orjson.dumps({"items": items}), content_type="application/json")
