"""Errors of the data plane, and the one place they become OpenAI-style JSON.

Denials on the request path are values (``ApiError``), returned by the pure core and rendered by the shell.
Exceptions exist only where control flow must unwind::

    DataPlaneError
    ├── InvalidSnapshot      (dataplane.snapshot.runtime) a snapshot that fails validation; the old one keeps serving
    └── UpstreamFailure      an attempt failed before its response reached the client (may fail over)

Foreign exceptions (aiohttp, asyncio timeouts) are translated into ``UpstreamFailure`` in the adapters, where
they enter. ``error_body`` is the only function producing the client-facing error JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import orjson

# OpenAI itself reports bad keys and unknown models as "invalid_request_error"; clients match on ``code``.
ErrorType = Literal["invalid_request_error", "permission_error", "rate_limit_error", "insufficient_quota",
                    "upstream_error", "server_error"]

# Why an attempt failed; the first four match the snapshot's ``Failover.on`` vocabulary.
FailureKind = Literal["connect", "timeout", "5xx", "429", "4xx", "auth", "protocol", "unsupported"]


class DataPlaneError(Exception):
    """Root of the data plane's exceptions."""


class UpstreamFailure(DataPlaneError):
    """An upstream attempt failed before any byte of its answer was sent to the client.

    ``body`` is the upstream's error body, kept only for 4xx answers a client may see (already scrubbed of our
    credential by the adapter); ``message`` never contains a secret. ``retry_after_s``: how long the upstream
    asked to wait (a 429's ``Retry-After``, Google's ``RetryInfo``), passed on to the client when it is the answer.
    """

    def __init__(self, kind: FailureKind, message: str, status: int = 0, body: bytes = b"",
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ApiError:
    """A refusal to show the client: HTTP status plus the OpenAI error fields."""

    status: int
    message: str
    type: ErrorType
    code: str | None = None
    param: str | None = None

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    """The OpenAI error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def retry_headers(failure: UpstreamFailure) -> dict[str, str]:
    """``Retry-After`` for an upstream 429 that said how long to wait (whole seconds, at least one)."""
    if failure.kind != "429" or not failure.retry_after_s or failure.retry_after_s <= 0:
        return {}
    return {"retry-after": str(max(1, math.ceil(failure.retry_after_s)))}


def upstream_error(failure: UpstreamFailure) -> ApiError:
    """What the client sees when the last attempt failed and no failover remains."""
    if failure.kind == "timeout":
        return ApiError(504, f"upstream timed out: {failure.message}", "upstream_error", "upstream_timeout")
    if failure.kind == "429":
        return ApiError(429, "upstream rate limit exceeded", "rate_limit_error", "upstream_rate_limited")
    return ApiError(502, f"bad gateway: {failure.message}", "upstream_error", "bad_gateway")


NO_SNAPSHOT = ApiError(503, "the data plane has no policy snapshot yet", "server_error", "not_ready")


def quoted(value: str) -> str:
    """A client-supplied value quoted for an error message, cut short so a message stays small."""
    return repr(value if len(value) <= 64 else value[:64] + "...")
