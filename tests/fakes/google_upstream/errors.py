"""Google's errors: its JSON answers (``_json``), the error envelope (``google_error``) with BadRequest and
ErrorInfo details, and the messages it sends about credentials, API keys and Vertex's documentation."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_SIGN_IN = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
MISSING_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 access token, login "
                       f"cookie or other valid authentication credential. {_SIGN_IN}")
INVALID_CREDENTIALS = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                       f"or other valid authentication credential. {_SIGN_IN}")
API_KEY_NOT_SUPPORTED = ("API keys are not supported by this API. Expected OAuth2 access token or other "
                         "authentication credentials that assert a principal. See "
                         "https://cloud.google.com/docs/authentication")
INVALID_API_KEY = "API key not valid. Please pass a valid API key."
UNREGISTERED_CALLER = ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                       "API Key or other form of API consumer identity to call this API.")
_VERTEX_DOCS = "Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"


def _json(data: Any, status: int = 200) -> web.Response:
    """Google's JSON answers: indented by two spaces, ``application/json; charset=UTF-8``."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", status=status,
                        headers={"Content-Type": "application/json; charset=UTF-8",
                                 "Vary": "Origin, X-Origin, Referer"})


def google_error(code: int, message: str, details: list[dict[str, Any]] | None = None,
                 status: str | None = None) -> web.Response:
    """Google's error envelope ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status or _STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return _json({"error": error}, status=code)


def _violations_error(violations: list[tuple[str, str]]) -> web.Response:
    return google_error(400, "\n".join(d for _, d in violations), [{"@type": _BAD_REQUEST, "fieldViolations": [
        {"field": f, "description": d} if f else {"description": d} for f, d in violations]}])


def _error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"@type": _ERROR_INFO, "reason": reason, "domain": domain, "metadata": metadata}
