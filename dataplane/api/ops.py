"""The operator endpoints: liveness, readiness and the deployments' health (``/metrics`` is the record's).

None of them needs a key, and none shows a secret or a URL: names, states and reasons, like ``/metrics``.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from dataplane.api.appstate import STATE
from dataplane.core.health import usable_deployments


async def health_view(request: web.Request) -> web.Response:
    """``GET /healthz/deployments``: the health of every deployment a tenant may use here; an unhealthy one with
    its ``reason`` (the last error, the active check's finding, the missing credential's source) and ``since``
    (unix seconds)."""
    runtime = request.app[STATE].holder.runtime
    deployments = usable_deployments(runtime) if runtime is not None else []
    views = request.app[STATE].health.view(deployments, time.monotonic())
    return web.Response(body=orjson.dumps({"deployments": [
        {"deployment": v.deployment, "provider": v.provider, "state": v.state,
         "consecutive_failures": v.consecutive_failures, "ejections": v.ejections,
         "ejected_for_s": round(v.ejected_for_s, 3), "ttfb_ewma_ms": round(v.ttfb_ewma_s * 1000, 3),
         "reason": v.reason, "since": v.since_unix_s}
        for v in views]}), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    version = request.app[STATE].holder.version
    if not version:
        return web.Response(status=503, body=b'{"status":"no snapshot"}', content_type="application/json")
    return web.Response(body=orjson.dumps({"status": "ready", "version": version}), content_type="application/json")
