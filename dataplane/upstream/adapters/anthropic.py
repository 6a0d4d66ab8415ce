"""Adapter for Anthropic's Messages API: OpenAI chat completions in, OpenAI chat completions out.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``; the body and the answer are
translated by the pure functions of ``dataplane.translate.hub_to_anthropic``, so what leaves this adapter (a
``Complete`` body, or each ``Stream`` payload) is exactly what the OpenAI adapter would produce, usage chunk
included. Client exceptions (``dataplane.upstream.adapters.wire``) and Anthropic's status codes become
``UpstreamFailure`` here:

- 429 → ``429``; 5xx and 529 (``overloaded_error``) → ``5xx``; 401/403 → ``auth`` (body dropped);
- 404 → ``unsupported``: the upstream model does not exist, a fault of policy rather than of the client, so the
  next candidate is tried and the client gets a 502;
- other 4xx → ``4xx`` with the error re-wrapped in OpenAI's envelope (scrubbed of the credential), which the
  client sees; a request the Messages API cannot express (``n`` > 1, legacy ``functions``…) is a 400 the same way;
- an ``error`` event or a stream that ends without ``message_stop`` → ``UpstreamFailure`` while iterating.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from dataplane.core.validate import HubRequest
from dataplane.errors import FailureKind, UpstreamFailure, error_body
from dataplane.snapshot.runtime import Deployment, Provider
from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.hub_to_anthropic import ChunkTranslator, anthropic_request, openai_completion
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.event_stream import flatten, json_events, translated_batches
from dataplane.upstream.adapters.wire import SseBatches, check_credential, header_lines, post, read_whole
from dataplane.upstream.client import UpstreamClient

ANTHROPIC_VERSION = "2023-06-01"
_OPENAI_ERROR_TYPES = {"rate_limit_error": "rate_limit_error", "permission_error": "permission_error",
                       "authentication_error": "invalid_request_error"}


def _scrub(text: str, provider: Provider) -> str:
    return text.replace(provider.credential, "[redacted]") if provider.credential else text


def openai_error(body: bytes, provider: Provider) -> bytes:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` re-wrapped as an OpenAI error body."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return error_body(f"provider {provider.name!r} refused the request", "invalid_request_error")
    kind = str(error.get("type", "invalid_request_error"))
    message = _scrub(str(error.get("message", "")), provider)
    return error_body(message, _OPENAI_ERROR_TYPES.get(kind, "invalid_request_error"), kind)


def _status_failure(status: int, body: bytes, provider: Provider) -> UpstreamFailure:
    where = f"provider {provider.name!r} answered HTTP {status}"
    if status == 429:
        return UpstreamFailure("429", where, status)
    if status >= 500:
        return UpstreamFailure("5xx", f"{where} (overloaded)" if status == 529 else where, status)
    if status in (401, 403):
        return UpstreamFailure("auth", f"{where}: the gateway's credential was refused", status)
    if status == 404:
        return UpstreamFailure("unsupported", f"{where}: the upstream model does not exist there", status)
    return UpstreamFailure("4xx", where, status, openai_error(body, provider))


def _ends(payloads: list[bytes]) -> bool:
    return any(b'"message_stop"' in p for p in payloads)


def _stream_failure(provider: Provider) -> Callable[[StreamError], UpstreamFailure]:
    def fail(error: StreamError) -> UpstreamFailure:
        kind: FailureKind = "5xx" if error.type in ("overloaded_error", "api_error") else "protocol"
        return UpstreamFailure(kind, f"provider {provider.name!r} failed mid-stream ({error.type}): "
                                     f"{_scrub(error.message, provider)}")
    return fail


class AnthropicAdapter:
    """Task-safe: holds only the shared upstream client (owned and closed by the application) and a clock."""

    def __init__(self, client: UpstreamClient, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        check_credential(provider)
        if request.surface == "count_tokens":
            return await self._count_tokens(deployment, request, timeout_s)
        if request.surface != "chat":
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} (Anthropic) has no {request.surface} "
                                                 "endpoint")
        body = anthropic_request(request.payload, deployment.upstream_model, deployment.max_output_tokens,
                                 request.stream)
        if isinstance(body, Untranslatable):
            raise UpstreamFailure("4xx", body.message, 400, error_body(
                body.message, "invalid_request_error", "unsupported_parameter", body.param))
        resp, deadline = await post(self._client, provider, f"{provider.base_url}/v1/messages",
                                    _headers(provider), orjson.dumps(body), timeout_s, _status_failure)
        if not request.stream:
            raw = await read_whole(resp, provider, deadline)
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                message = None
            if not isinstance(message, dict) or message.get("type") != "message":
                raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed answer")
            return Complete(orjson.dumps(openai_completion(message, int(self._clock()))))
        translator = ChunkTranslator(created=int(self._clock()), model=deployment.upstream_model)
        batches = translated_batches(json_events(SseBatches(resp, provider, _ends), provider), translator.feed,
                                     lambda: translator.finished, _stream_failure(provider),
                                     f"provider {provider.name!r} ended the stream before message_stop")
        return Stream(flatten(batches), resp.close, batches)

    async def _count_tokens(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        """Anthropic's own count (exact): the client's Messages body, with the deployment's model."""
        provider = deployment.provider
        if request.native is None or request.dialect != "anthropic":
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} counts tokens of Messages bodies only")
        body = {k: v for k, v in request.native.items() if k not in ("max_tokens", "stream")}
        body["model"] = deployment.upstream_model
        resp, deadline = await post(self._client, provider, f"{provider.base_url}/v1/messages/count_tokens",
                                    _headers(provider), orjson.dumps(body), timeout_s, _status_failure)
        return Complete(await read_whole(resp, provider, deadline), native=True)


def _headers(provider: Provider) -> str:
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Accept-Encoding": "identity",
               "User-Agent": "tollway", "anthropic-version": ANTHROPIC_VERSION}
    if provider.credential:
        headers["x-api-key"] = provider.credential
    return header_lines(headers)
