"""What answers when no endpoint does: unknown paths and wrong methods, in the API's own error format; and CORS.

Registered last, on every method and path, so the request path pays nothing for it: an unknown path gets a 404
and a known path with a method it does not take a 405 (with ``Allow``), both as the JSON the caller's SDK reads
(OpenAI's ``{"error": ...}``, or Anthropic's envelope under ``/v1/messages``), naming the method and the path,
with the request id. CORS, off by default, is one middleware that answers preflights and adds the
``Access-Control-*`` headers for the origins a data plane allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from dataplane.api.appstate import STATE, request_id, tollway_headers
from dataplane.errors import ApiError
from dataplane.translate.anthropic_to_hub import anthropic_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _allowed(request: web.Request) -> list[str]:
    """The methods other routes take at this path (empty: no route has it)."""
    methods: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == CATCH_ALL:
            continue
        _match, allowed = await resource.resolve(request)
        methods.update(allowed)
    return sorted(methods - {"HEAD", "*"})


CATCH_ALL = "/{tail:.*}"


async def not_found(request: web.Request) -> web.StreamResponse:
    headers = tollway_headers(request_id(request), request.app[STATE].holder.version)
    allowed = await _allowed(request)
    if allowed:
        headers["Allow"] = ", ".join(allowed)
        err = ApiError(405, f"method {request.method} is not allowed on {request.path} "
                            f"(allowed: {', '.join(allowed)})", "invalid_request_error", "method_not_allowed")
    else:
        err = ApiError(404, f"no endpoint {request.method} {request.path} on this gateway: see GET /v1/models "
                            "and the README's API section", "invalid_request_error", "unknown_url")
    if request.path.startswith("/v1/messages"):
        return web.Response(status=err.status, body=anthropic_error(err.status, err.message), headers=headers,
                            content_type="application/json")
    return web.Response(status=err.status, body=err.body(), headers=headers, content_type="application/json")


def cors_middleware(origins: frozenset[str]) -> Middleware:
    """Browsers of ``origins`` (``*``: any) may call the API; preflights are answered here."""
    any_origin = "*" in origins

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and (any_origin or origin in origins)
        if request.method == "OPTIONS" and allowed and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600", "Vary": "Origin"})
        response = await handler(request)
        if allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "*"
            response.headers["Vary"] = "Origin"
        return response

    return cors
