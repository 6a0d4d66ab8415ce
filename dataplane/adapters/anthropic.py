"""Adapter for Anthropic's Messages API: OpenAI chat completions in, OpenAI chat completions out.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``; the body and the answer are
translated by the pure functions of ``dataplane.anthropic_translate``, so what leaves this adapter (a
``Complete`` body, or each ``Stream`` payload) is exactly what the OpenAI adapter would produce, usage chunk
included. aiohttp exceptions and Anthropic's status codes become ``UpstreamFailure`` here:

- 429 → ``429``; 5xx and 529 (``overloaded_error``) → ``5xx``; 401/403 → ``auth`` (body dropped);
- 404 → ``unsupported``: the upstream model does not exist, a fault of policy rather than of the client, so the
  next candidate is tried and the client gets a 502;
- other 4xx → ``4xx`` with the error re-wrapped in OpenAI's envelope (scrubbed of the credential), which the
  client sees; a request the Messages API cannot express (``n`` > 1, legacy ``functions``…) is a 400 the same way;
- an ``error`` event or a stream that ends without ``message_stop`` → ``UpstreamFailure`` while iterating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiohttp
import orjson

from dataplane.adapters import Complete, Stream
from dataplane.anthropic_translate import (
    ChunkTranslator,
    StreamError,
    Untranslatable,
    anthropic_request,
    openai_completion,
)
from dataplane.errors import FailureKind, UpstreamFailure, error_body
from dataplane.runtime import Deployment, Provider
from dataplane.validate import ChatRequest

ANTHROPIC_VERSION = "2023-06-01"
_MAX_ERROR_BODY = 64 * 1024
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


def _translate(exc: BaseException, provider: Provider) -> UpstreamFailure:
    kind: FailureKind
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", "timed out"
    elif isinstance(exc, aiohttp.ClientPayloadError | ValueError):
        kind, what = "protocol", "sent a malformed answer"
    else:
        kind, what = "connect", f"could not be reached ({type(exc).__name__})"
    return UpstreamFailure(kind, f"provider {provider.name!r} {what}")


async def sse_data(resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """The ``data`` of each SSE event (multi-line data joined with newlines); ``event:`` lines are not needed
    because every Anthropic payload repeats its type. Raises aiohttp's exceptions; the caller translates."""
    data: list[bytes] = []
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif not line and data:
            yield b"\n".join(data)
            data = []
    if data:
        yield b"\n".join(data)


async def _chunks(resp: aiohttp.ClientResponse, translator: ChunkTranslator,
                  provider: Provider) -> AsyncGenerator[bytes, None]:
    try:
        async for data in sse_data(resp):
            event = orjson.loads(data)
            out = translator.feed(event if isinstance(event, dict) else {})
            if isinstance(out, StreamError):
                raise UpstreamFailure("5xx" if out.type in ("overloaded_error", "api_error") else "protocol",
                                      f"provider {provider.name!r} failed mid-stream ({out.type}): "
                                      f"{_scrub(out.message, provider)}")
            for chunk in out:
                yield chunk
            if translator.finished:
                return
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _translate(exc, provider) from None
    finally:
        resp.release()
    raise UpstreamFailure("protocol", f"provider {provider.name!r} ended the stream before message_stop")


class AnthropicAdapter:
    """Task-safe: holds only the shared session (owned and closed by the application) and a clock."""

    def __init__(self, session: aiohttp.ClientSession, clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._clock = clock

    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.credential_env and provider.credential is None:
            raise UpstreamFailure("auth", f"provider {provider.name!r} has no credential on this data plane "
                                          f"(environment variable {provider.credential_env} is not set)")
        body = anthropic_request(request.payload, deployment.upstream_model, deployment.max_output_tokens,
                                 request.stream)
        if isinstance(body, Untranslatable):
            raise UpstreamFailure("4xx", body.message, 400, error_body(
                body.message, "invalid_request_error", "unsupported_parameter", body.param))
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "anthropic-version": ANTHROPIC_VERSION}
        if provider.credential:
            headers["x-api-key"] = provider.credential
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=provider.connect_timeout_s,
                                        sock_read=provider.read_timeout_s)
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._session.post(f"{provider.base_url}/v1/messages", data=orjson.dumps(body),
                                                headers=headers, timeout=timeout, allow_redirects=False)
                if resp.status >= 400 or resp.status < 200:
                    raise _status_failure(resp.status, await resp.content.read(_MAX_ERROR_BODY), provider)
                if not request.stream:
                    message = orjson.loads(await resp.read())
                    if not isinstance(message, dict) or message.get("type") != "message":
                        raise ValueError("not a message")
                    resp.release()
                    return Complete(orjson.dumps(openai_completion(message, int(self._clock()))))
        except UpstreamFailure:
            if resp is not None:
                resp.release()
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if resp is not None:
                resp.release()
            raise _translate(exc, provider) from None
        translator = ChunkTranslator(created=int(self._clock()), model=deployment.upstream_model)
        return Stream(_chunks(resp, translator, provider), resp.close)
