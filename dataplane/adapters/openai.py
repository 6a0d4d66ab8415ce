"""Adapter for OpenAI-compatible upstreams (OpenAI, vLLM, …), over one shared ClientSession.

The request body is the client's, with ``model`` replaced by the deployment's upstream model and, when
streaming, ``stream_options.include_usage`` forced on so the gateway always learns the token counts. aiohttp
exceptions are translated into ``UpstreamFailure`` here and nowhere else. The upstream credential never
appears in an error: upstream 401/403 bodies are dropped, other 4xx bodies are scrubbed of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import orjson

from dataplane.adapters import Complete, Stream
from dataplane.errors import FailureKind, UpstreamFailure
from dataplane.runtime import Deployment, Provider
from dataplane.validate import ChatRequest

_MAX_ERROR_BODY = 64 * 1024


def upstream_body(deployment: Deployment, request: ChatRequest) -> bytes:
    body: dict[str, Any] = dict(request.payload)
    body["model"] = deployment.upstream_model
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(body)


def _target(deployment: Deployment) -> tuple[str, dict[str, str]]:
    p: Provider = deployment.provider
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if p.credential:
        headers["Authorization"] = f"Bearer {p.credential}"
    return f"{p.base_url}/chat/completions", headers


def _scrub(body: bytes, provider: Provider) -> bytes:
    if provider.credential:
        body = body.replace(provider.credential.encode(), b"[redacted]")
    return body


def _status_failure(status: int, body: bytes, provider: Provider) -> UpstreamFailure:
    where = f"provider {provider.name!r} answered HTTP {status}"
    if status == 429:
        return UpstreamFailure("429", where, status)
    if status >= 500:
        return UpstreamFailure("5xx", where, status)
    if status in (401, 403):
        return UpstreamFailure("auth", f"{where}: the gateway's credential was refused", status)
    return UpstreamFailure("4xx", where, status, _scrub(body, provider))


def _translate(exc: BaseException, provider: Provider) -> UpstreamFailure:
    kind: FailureKind
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", "timed out"
    elif isinstance(exc, ValueError):
        kind, what = "protocol", "sent a malformed answer"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        # A connection lost mid-body: for failover purposes, the same as one that never answered.
        kind, what = "connect", "closed the connection mid-answer"
    else:
        kind, what = "connect", f"could not be reached ({type(exc).__name__})"
    return UpstreamFailure(kind, f"provider {provider.name!r} {what}")


async def _sse_payloads(resp: aiohttp.ClientResponse, provider: Provider) -> AsyncGenerator[bytes, None]:
    """The payload of each ``data:`` event until ``[DONE]``; multi-line data joined with newlines."""
    data: list[bytes] = []
    try:
        async for raw in resp.content:
            line = raw.rstrip(b"\r\n")
            if line:
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                continue
            if not data:
                continue
            payload = data[0] if len(data) == 1 else b"\n".join(data)
            data = []
            if payload == b"[DONE]":
                return
            yield payload
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _translate(exc, provider) from None
    finally:
        resp.release()
    if data and data[0] != b"[DONE]":
        yield b"\n".join(data)
    # An upstream that ends without [DONE] is tolerated: the client still gets a well-framed stream.


class OpenAIAdapter:
    """Task-safe: holds only the shared session, owned and closed by the application."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.credential_env and provider.credential is None:
            raise UpstreamFailure("auth", f"provider {provider.name!r} has no credential on this data plane "
                                          f"(environment variable {provider.credential_env} is not set)")
        url, headers = _target(deployment)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=provider.connect_timeout_s,
                                        sock_read=provider.read_timeout_s)
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._session.post(url, data=upstream_body(deployment, request), headers=headers,
                                                timeout=timeout, allow_redirects=False)
                if resp.status >= 400 or resp.status < 200:
                    body = await resp.content.read(_MAX_ERROR_BODY)
                    raise _status_failure(resp.status, body, provider)
                if not request.stream:
                    return Complete(await resp.read())
        except UpstreamFailure:
            if resp is not None:
                resp.release()
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if resp is not None:
                resp.release()
            raise _translate(exc, provider) from None
        return Stream(_sse_payloads(resp, provider), resp.close)
