"""Adapter for Azure OpenAI: the OpenAI wire format behind Azure's URL scheme, key header and error shapes.

``POST {base_url}/openai/deployments/{upstream_model}/chat/completions?api-version={api_version}`` with
``api-key``; the deployment in the URL chooses the model, so the body carries no ``model``. Answers are OpenAI's
plus Azure's content-filter annotations, which pass through, except for one thing: Azure's first stream chunk
can carry only ``prompt_filter_results`` and an empty ``choices``. OpenAI sends an empty ``choices`` only in the
final usage chunk, and clients index ``choices[0]`` on every other one, so that chunk is dropped here.

Failures, translated here and nowhere else: 429 → ``429``; 5xx → ``5xx``; 401/403 → ``auth`` (body dropped);
404 → ``unsupported`` (no such deployment or api-version: a fault of policy, so the next candidate is tried and
the client gets a 502); other 4xx (e.g. a ``content_filter`` refusal of the prompt) → ``4xx`` with Azure's error
normalised to OpenAI's envelope, ``innererror`` kept, the credential scrubbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from dataplane.adapters import Complete, Stream
from dataplane.adapters.anthropic import sse_data
from dataplane.errors import FailureKind, UpstreamFailure, error_body
from dataplane.runtime import Deployment, Provider
from dataplane.validate import ChatRequest

_MAX_ERROR_BODY = 64 * 1024


def azure_url(deployment: Deployment) -> str:
    p = deployment.provider
    return (f"{p.base_url}/openai/deployments/{quote(deployment.upstream_model, safe='')}/chat/completions"
            f"?api-version={quote(p.api_version, safe='')}")


def azure_body(request: ChatRequest) -> bytes:
    body: dict[str, Any] = {k: v for k, v in request.payload.items() if k != "model"}
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(body)


def _scrub(text: str, provider: Provider) -> str:
    return text.replace(provider.credential, "[redacted]") if provider.credential else text


def openai_error(body: bytes, provider: Provider) -> bytes:
    """Azure's ``{"error": {"code", "message", …}}`` with OpenAI's four fields filled in."""
    try:
        parsed: Any = orjson.loads(_scrub(body.decode("utf-8", "replace"), provider))
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return error_body(f"provider {provider.name!r} refused the request", "invalid_request_error")
    code = error.get("code")
    normalised = {**error, "message": str(error.get("message", "")),
                  "type": error.get("type") or "invalid_request_error", "param": error.get("param"),
                  "code": None if code is None else str(code)}
    return orjson.dumps({"error": normalised})


def _status_failure(status: int, body: bytes, provider: Provider) -> UpstreamFailure:
    where = f"provider {provider.name!r} answered HTTP {status}"
    if status == 429:
        return UpstreamFailure("429", where, status)
    if status >= 500:
        return UpstreamFailure("5xx", where, status)
    if status in (401, 403):
        return UpstreamFailure("auth", f"{where}: the gateway's credential was refused", status)
    if status == 404:
        return UpstreamFailure("unsupported", f"{where}: no such deployment or api-version there", status)
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


def is_filter_only(payload: bytes) -> bool:
    """Azure's prompt-filter chunk: empty ``choices`` and no ``usage``."""
    if b"prompt_filter_results" not in payload:
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices") and chunk.get("usage") is None


async def _payloads(resp: aiohttp.ClientResponse, provider: Provider) -> AsyncGenerator[bytes, None]:
    try:
        async for data in sse_data(resp):
            if data == b"[DONE]":
                return
            if not is_filter_only(data):
                yield data
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _translate(exc, provider) from None
    finally:
        resp.release()
    # Like the OpenAI adapter: an upstream that ends without [DONE] is tolerated.


class AzureAdapter:
    """Task-safe: holds only the shared session, owned and closed by the application."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.credential_env and provider.credential is None:
            raise UpstreamFailure("auth", f"provider {provider.name!r} has no credential on this data plane "
                                          f"(environment variable {provider.credential_env} is not set)")
        if not provider.api_version:
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} has no api_version")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if provider.credential:
            headers["api-key"] = provider.credential
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=provider.connect_timeout_s,
                                        sock_read=provider.read_timeout_s)
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._session.post(azure_url(deployment), data=azure_body(request), headers=headers,
                                                timeout=timeout, allow_redirects=False)
                if resp.status >= 400 or resp.status < 200:
                    raise _status_failure(resp.status, await resp.content.read(_MAX_ERROR_BODY), provider)
                if not request.stream:
                    body = await resp.read()
                    resp.release()
                    return Complete(body)
        except UpstreamFailure:
            if resp is not None:
                resp.release()
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if resp is not None:
                resp.release()
            raise _translate(exc, provider) from None
        return Stream(_payloads(resp, provider), resp.close)
