"""What every request meets first, whatever its operation: it is recorded (``Received``), authenticated, then put
through the ``delay_s``, ``drop_connection`` and ``fail_*`` knobs and the model id check (``_Prelude``, which
holds ``FakeBedrock``'s knobs and records); and the latency since it arrived (``_latency``)."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.bedrock_upstream.errors import ERROR_MESSAGES, FAIL_ERRORS, aws_error, error_status
from tests.fakes.bedrock_upstream.models import MODELS, base_model_id
from tests.fakes.bedrock_upstream.sigv4 import INVALID_TOKEN, Refusal, parse_authorization, verify_signature

_STARTED = web.RequestKey("started", float)


@dataclass
class Received:
    """One request as it arrived: ``headers`` lack ``Authorization`` (``credential``/``signed_headers`` are its
    parts); ``auth_error`` is the ``x-amzn-ErrorType`` the fake answered for authentication (None: accepted)."""

    operation: str
    path: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw_body: bytes
    credential: str = ""
    signed_headers: list[str] = field(default_factory=list)
    auth_error: str | None = None


@dataclass
class _Prelude:
    """The knobs and records of one ``FakeBedrock`` (its fields), and what each of its endpoints does first."""

    access_key: str = "AKIDEXAMPLE"
    secret_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    session_token: str | None = None
    region: str = "eu-central-1"
    api_key: str | None = None
    token_expired: bool = False
    clock_offset_s: float = 0.0
    models: set[str] = field(default_factory=lambda: set(MODELS))
    reply: str = "Hello from the fake Bedrock model."
    tool_input: dict[str, Any] | None = None
    tool_preamble: str = ""
    stop_reason: str | None = None
    cache_read: int = 0
    cache_write: int = 0
    fail_status: int = 0
    fail_times: int = 0
    fail_error: str | None = None
    delay_s: float = 0.0
    drop_connection: bool = False
    die_after_events: int = -1
    error_after_events: int = -1
    stream_error: str = "throttlingException"
    event_delay_s: float = 0.0
    padding: bool = True
    requests: list[Received] = field(default_factory=list)
    endpoint: str = ""

    async def _prelude(self, request: web.Request, operation: str) -> tuple[Any, web.StreamResponse | None]:
        """What every endpoint does first: record the request, check its signature, then the ``delay_s``,
        ``drop_connection`` and ``fail_*`` knobs and the model id. The parsed body (None when it is not JSON), and
        the answer that ends the request (None: go on)."""
        request[_STARTED] = time.monotonic()
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = None
        headers = {name: value for name, value in request.headers.items() if name.lower() != "authorization"}
        _, fields = parse_authorization(request.headers.get("Authorization", ""))
        model_id = request.match_info.get("modelId", "")
        received = Received(operation, request.path, model_id, headers, parsed if isinstance(parsed, dict) else {},
                            raw, fields.get("Credential", ""),
                            [h for h in fields.get("SignedHeaders", "").split(";") if h])
        self.requests.append(received)
        failure = self._authenticate(request, raw)
        if failure is not None:
            received.auth_error = failure.error_type
            return parsed, aws_error(failure.error_type, failure.message, 403)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return parsed, web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            kind = self.fail_error or FAIL_ERRORS.get(self.fail_status, "InternalServerException")
            status = self.fail_status if self.fail_error is None and self.fail_status else error_status(kind)
            return parsed, aws_error(kind, ERROR_MESSAGES.get(kind, kind), status)
        if base_model_id(model_id) not in self.models:
            return parsed, aws_error("ResourceNotFoundException", ERROR_MESSAGES["ResourceNotFoundException"])
        return parsed, None

    def _authenticate(self, request: web.Request, raw: bytes) -> Refusal | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if self.api_key is not None and hmac.compare_digest(authorization[7:], self.api_key):
                return None
            return Refusal("UnrecognizedClientException", INVALID_TOKEN)
        return verify_signature(request.method, f"{request.scheme}://{request.host}{request.raw_path}",
                                request.headers.items(), raw, access_key=self.access_key, secret_key=self.secret_key,
                                session_token=self.session_token, region=self.region,
                                now=time.time() + self.clock_offset_s, token_expired=self.token_expired)

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        """A path the service has no operation for: recorded, authenticated, then AWS's 404."""
        raw = await request.read()
        self.requests.append(Received("", request.path, "", {k: v for k, v in request.headers.items()
                                                             if k.lower() != "authorization"}, {}, raw))
        failure = self._authenticate(request, raw)
        if failure is not None:
            self.requests[-1].auth_error = failure.error_type
            return aws_error(failure.error_type, failure.message, 403)
        return aws_error("UnknownOperationException", "Unknown operation", 404)


def _latency(request: web.Request) -> int:
    started = request.get(_STARTED, time.monotonic())
    return max(1, int((time.monotonic() - started) * 1000))
