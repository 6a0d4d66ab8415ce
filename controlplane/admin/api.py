"""The control plane's HTTP admin API (docs/admin-api.md): a thin shell over ``Repository`` and a ``StatusSource``.

Handlers parse the request, call the repository, and serialize; this module is the one place where control-plane
errors become HTTP answers (``{"error": {"message", "type", "param", "code"}}``):

    InvalidPolicy 422 invalid_policy (+ "problems") · Conflict 409 conflict · AlreadyExists 409 already_exists ·
    KeyRevoked 409 key_revoked · RolloutInProgress 409 rollout_in_progress · InUse 409 in_use (+ "referrers") ·
    NotFound 404 not_found ·
    InvalidRequest 400 invalid_request_error · StoreUnavailable 503 store_unavailable · StoreError 500 store_error ·
    no/wrong token 401 authentication_error · an inference key 403 permission_error

The admin token is compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from controlplane.admin.analytics_api import add_analytics_routes
from controlplane.admin.dashboard.routes import dashboard_gate, is_dashboard_path
from controlplane.admin.plan_api import add_plan_routes
from controlplane.admin.replay_api import add_replay_routes
from controlplane.admin.usage_api import add_usage_routes
from controlplane.errors import (
    AlreadyExists,
    Conflict,
    ControlPlaneError,
    InUse,
    InvalidPolicy,
    InvalidRequest,
    KeyRevoked,
    NotFound,
    RolloutInProgress,
    is_count,
)
from controlplane.policy.audit import add_audit_routes
from controlplane.policy.compliance import add_compliance_routes
from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import StoreError, StoreUnavailable
from controlplane.usage.db import UsageDB
from tollway.keyformat import PREFIX as KEY_PREFIX

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024 * 1024  # a policy of 100,000 keys is ~30 MiB of JSON; leave ample room


class StatusSource(Protocol):
    """What the admin API shows about the fleet; implemented by the discovery server's registry."""

    def dataplanes(self) -> list[dict[str, Any]]: ...

    def snapshots(self) -> list[dict[str, Any]]: ...

    def providers(self) -> list[dict[str, Any]]: ...


REPOSITORY = web.AppKey("repository", Repository)
STATUS = web.AppKey("status", StatusSource)
TOKEN = web.AppKey("admin_token", str)
# Paths served without the admin token: /healthz, and /metrics when ``controlplane.admin.metrics`` is told to.
PUBLIC_PATHS = web.AppKey("public_paths", frozenset[str])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_admin_app(repository: Repository, status: StatusSource, admin_token: str,
                     usage_db: UsageDB | None = None) -> web.Application:
    if not admin_token:
        raise ValueError("the admin token must not be empty")
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MAX_BODY_BYTES)
    app[REPOSITORY] = repository
    app[STATUS] = status
    app[TOKEN] = admin_token
    app[PUBLIC_PATHS] = frozenset({"/healthz"})
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/admin/v1/resources", _get_resources)
    app.router.add_delete("/admin/v1/resources/{kind}/{name}", _delete)
    app.router.add_post("/admin/v1/apply", _apply)
    app.router.add_post("/admin/v1/keys", _create_key)
    app.router.add_post("/admin/v1/keys/{name}/rotate", _rotate_key)
    app.router.add_post("/admin/v1/keys/{name}/revoke", _revoke_key)
    app.router.add_get("/admin/v1/history", _history)
    app.router.add_get("/admin/v1/history/{revision}", _history_entry)
    app.router.add_post("/admin/v1/rollback", _rollback)
    app.router.add_get("/admin/v1/dataplanes", _dataplanes)
    app.router.add_get("/admin/v1/snapshots", _snapshots)
    app.router.add_get("/admin/v1/providers", _providers)
    if usage_db is not None:
        add_usage_routes(app, usage_db)
        add_analytics_routes(app, usage_db)
        add_replay_routes(app, usage_db)
    add_plan_routes(app, repository, lambda: [str(s.get("region")) for s in status.snapshots()])
    add_audit_routes(app, repository.store)
    add_compliance_routes(app, repository)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, type_: str, message: str, **extra: Any) -> web.Response:
    return _json({"error": {"message": message, "type": type_, "param": None, "code": type_, **extra}}, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidPolicy as e:
        return error_response(422, "invalid_policy", str(e), problems=[p.to_json() for p in e.problems])
    except AlreadyExists as e:
        return error_response(409, "already_exists", str(e))
    except KeyRevoked as e:
        return error_response(409, "key_revoked", str(e))
    except RolloutInProgress as e:
        return error_response(409, "rollout_in_progress", str(e))
    except InUse as e:
        return error_response(409, "in_use", str(e), referrers=[
            {"kind": p.kind, "name": p.name, "field": p.field} for p in e.referrers])
    except Conflict as e:
        return error_response(409, "conflict", str(e))
    except NotFound as e:
        return error_response(404, "not_found", str(e))
    except InvalidRequest as e:
        return error_response(400, "invalid_request_error", str(e))
    except ControlPlaneError as e:
        return error_response(500, "internal_error", str(e))
    except StoreUnavailable as e:
        log.warning("store unavailable during %s %s: %s", request.method, request.path, e)
        return error_response(503, "store_unavailable", f"the policy store is unavailable: {e}")
    except StoreError as e:  # e.g. etcd refusing a transaction over --max-txn-ops / --max-request-bytes
        log.warning("store error during %s %s: %s", request.method, request.path, e)
        return error_response(500, "store_error", f"the policy store refused the request: {e}")
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(e.status, "invalid_request_error" if e.status < 500 else "internal_error",
                                  e.reason)
        raise


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in request.app[PUBLIC_PATHS]:
        return await handler(request)
    if is_dashboard_path(request.path):  # bearer, or the browser's session cookie (admin/dashboard/routes.py)
        return await dashboard_gate(request, handler, request.app[TOKEN])
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(401, "authentication_error", "missing admin token: send Authorization: Bearer <token>")
    if hmac.compare_digest(token.encode(), request.app[TOKEN].encode()):
        return await handler(request)
    if token.startswith(KEY_PREFIX):
        return error_response(403, "permission_error", "inference keys cannot be used on the admin API")
    return error_response(401, "authentication_error", "invalid admin token")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _field(body: dict[str, Any], name: str, type_: type, default: Any = None) -> Any:
    """``body[name]`` when present and of ``type_`` (a bool is not an int here), ``default`` when null/absent."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, type_) or (isinstance(value, bool) and type_ is not bool):
        raise InvalidRequest(f"{name!r} must be of type {type_.__name__}")
    return value


def _who(body: dict[str, Any]) -> str:
    who: str = _field(body, "who", str, "") or "unknown"
    return who


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _get_resources(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if not kind:
        raise InvalidRequest("the 'kind' query parameter is required")
    revision, items = await request.app[REPOSITORY].get(kind, request.query.get("name"))
    return _json({"revision": revision, "items": items})


async def _apply(request: web.Request) -> web.Response:
    body = await _body(request)
    raw = _field(body, "documents", list, [])
    documents = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "document" not in item:
            raise InvalidRequest(f"documents[{i}] must be an object with 'source' and 'document'")
        documents.append(Document(str(item.get("source") or f"documents[{i}]"), item["document"]))
    result = await request.app[REPOSITORY].apply(
        documents, who=_who(body), dry_run=_field(body, "dryRun", bool, False),
        expected_revision=_field(body, "expectedRevision", int))
    return _json(result.to_json(bodies=_field(body, "withBodies", bool, False)))


async def _delete(request: web.Request) -> web.Response:
    expected = request.query.get("expectedRevision")
    if expected is not None and not is_count(expected):
        raise InvalidRequest("'expectedRevision' must be a generation number")
    revision = await request.app[REPOSITORY].delete(
        request.match_info["kind"], request.match_info["name"], who=request.query.get("who") or "unknown",
        expected_revision=int(expected) if expected is not None else None)
    return _json({"revision": revision})


async def _create_key(request: web.Request) -> web.Response:
    body = await _body(request)
    name, tenant = _field(body, "name", str), _field(body, "tenant", str)
    if not name or not tenant:
        raise InvalidRequest("'name' and 'tenant' are required")
    routes = _field(body, "routes", list, [])
    if not all(isinstance(r, str) for r in routes):
        raise InvalidRequest("'routes' must be a list of route names")
    created = await request.app[REPOSITORY].create_key(
        name, tenant, who=_who(body), project=_field(body, "project", str), routes=routes,
        expires_at=_field(body, "expiresAt", int), budget=_field(body, "budget", dict),
        rate_limits=_field(body, "rateLimits", dict))
    return _json({"name": created.name, "secret": created.secret, "hint": created.hint,
                  "revision": created.revision}, status=201)


async def _rotate_key(request: web.Request) -> web.Response:
    body = await _body(request)
    rotated = await request.app[REPOSITORY].rotate_key(
        request.match_info["name"], who=_who(body), overlap_seconds=_field(body, "overlapSeconds", int, 0))
    return _json({"name": rotated.name, "secret": rotated.secret, "hint": rotated.hint,
                  "revision": rotated.revision, "previousExpiresAt": rotated.previous_expires_at})


async def _revoke_key(request: web.Request) -> web.Response:
    body = await _body(request)
    name = request.match_info["name"]
    return _json({"name": name, "revision": await request.app[REPOSITORY].revoke_key(name, who=_who(body))})


async def _history(request: web.Request) -> web.Response:
    limit = request.query.get("limit")
    if limit is not None and not is_count(limit):
        raise InvalidRequest("'limit' must be a positive number")
    items = await request.app[REPOSITORY].history(int(limit) if limit is not None else None)
    return _json({"items": items})


async def _history_entry(request: web.Request) -> web.Response:
    revision = request.match_info["revision"]
    if not is_count(revision):
        raise NotFound(f"no history entry {revision[:40]!r}")  # a short prefix: never echo input unbounded
    return _json(await request.app[REPOSITORY].history_entry(int(revision)))


async def _rollback(request: web.Request) -> web.Response:
    body = await _body(request)
    to = _field(body, "toRevision", int)
    if to is None:
        raise InvalidRequest("'toRevision' is required")
    result = await request.app[REPOSITORY].rollback(
        to, who=_who(body), dry_run=_field(body, "dryRun", bool, False),
        expected_revision=_field(body, "expectedRevision", int),
        include_keys=_field(body, "includeKeys", bool, False))
    return _json(result.to_json())


async def _dataplanes(request: web.Request) -> web.Response:
    return _json({"items": request.app[STATUS].dataplanes()})


async def _snapshots(request: web.Request) -> web.Response:
    return _json({"items": request.app[STATUS].snapshots()})


async def _providers(request: web.Request) -> web.Response:
    return _json({"items": request.app[STATUS].providers()})
