"""Adapter for OpenAI-compatible upstreams (OpenAI, vLLM, …), over the shared lean ``UpstreamClient``.

The request body is the client's, with ``model`` replaced by the deployment's upstream model and, when
streaming, ``stream_options.include_usage`` forced on so the gateway always learns the token counts. Client
exceptions are translated into ``UpstreamFailure`` here and nowhere else. The upstream credential never
appears in an error: upstream 401/403 bodies are dropped, other 4xx bodies are scrubbed of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from dataplane.adapters import Complete, LastBatch, Stream
from dataplane.errors import FailureKind, UpstreamFailure
from dataplane.runtime import Deployment, Provider
from dataplane.sse import SseParser
from dataplane.upstream_http import Response, UpstreamClient
from dataplane.validate import ChatRequest

_MAX_ERROR_BODY = 64 * 1024


def upstream_body(deployment: Deployment, request: ChatRequest) -> bytes:
    body: dict[str, Any] = dict(request.payload)
    body["model"] = deployment.upstream_model
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(body)


def _target(deployment: Deployment) -> tuple[str, str]:
    p: Provider = deployment.provider
    # identity: the client does not decompress (no upstream compresses unasked, and JSON over a fast link gains
    # little); it refuses a compressed answer rather than pass it through.
    headers = ("Content-Type: application/json\r\nAccept: application/json\r\nAccept-Encoding: identity\r\n"
               "User-Agent: tollway\r\n")
    if p.credential:
        headers += f"Authorization: Bearer {p.credential}\r\n"
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


def _translate(exc: BaseException, provider: Provider, mid_answer: bool = False) -> UpstreamFailure:
    kind: FailureKind
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", "timed out"
    elif isinstance(exc, ValueError):
        kind, what = "protocol", "sent a malformed answer"
    elif mid_answer:
        # A connection lost mid-body: for failover purposes, the same as one that never answered.
        kind, what = "connect", "closed the connection mid-answer"
    else:
        kind, what = "connect", f"could not be reached ({type(exc).__name__})"
    return UpstreamFailure(kind, f"provider {provider.name!r} {what}")


async def _sse_batches(resp: Response, provider: Provider) -> AsyncGenerator[list[bytes], None]:
    """The payloads of the ``data:`` events until ``[DONE]``, grouped as they arrived."""
    parser = SseParser()
    try:
        while not parser.done:
            data = await resp.read_some()
            if not data:
                last = parser.finish()
                if last is not None:
                    yield [last]
                # An upstream that ends without [DONE] is tolerated: the client still gets a well-framed stream.
                return
            payloads = parser.feed(data)
            if parser.done:
                yield LastBatch(payloads)
                return
            if payloads:
                yield payloads
    except (OSError, TimeoutError, ValueError) as exc:
        resp.close()
        raise _translate(exc, provider, mid_answer=True) from None
    finally:
        # After [DONE] the connection may carry another request once the body's end arrives; a stream abandoned
        # before it (client gone, timeout) would leave unread events on it.
        if parser.done or resp.body_done:
            resp.release()
        else:
            resp.close()


async def _flatten(batches: AsyncGenerator[list[bytes], None]) -> AsyncGenerator[bytes, None]:
    try:
        async for batch in batches:
            for payload in batch:
                yield payload
    finally:
        await batches.aclose()


class OpenAIAdapter:
    """Task-safe: holds only the shared upstream client, owned and closed by the application."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def send(self, deployment: Deployment, request: ChatRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.credential_env and provider.credential is None:
            raise UpstreamFailure("auth", f"provider {provider.name!r} has no credential on this data plane "
                                          f"(environment variable {provider.credential_env} is not set)")
        if provider.credential and not provider.credential.isprintable():
            raise UpstreamFailure("auth", f"provider {provider.name!r} has a credential that cannot be sent in a "
                                          f"header (environment variable {provider.credential_env})")
        url, headers = _target(deployment)
        now = asyncio.get_running_loop().time()
        deadline = now + timeout_s
        resp: Response | None = None
        try:
            resp = await self._client.post(url, headers, upstream_body(deployment, request),
                                           connect_timeout_s=provider.connect_timeout_s,
                                           read_timeout_s=provider.read_timeout_s,
                                           deadline=min(deadline, now + provider.read_timeout_s))
            if resp.status >= 400 or resp.status < 200:
                body = await resp.read(_MAX_ERROR_BODY, deadline)
                raise _status_failure(resp.status, body, provider)
            if not request.stream:
                body = await resp.read(deadline=deadline)
                resp.release()
                return Complete(body)
        except UpstreamFailure:
            if resp is not None:
                resp.release()
            raise
        except (OSError, TimeoutError, ValueError) as exc:
            if resp is not None:
                resp.close()
            raise _translate(exc, provider, mid_answer=resp is not None) from None
        except BaseException:
            if resp is not None:
                resp.close()
            raise
        batches = _sse_batches(resp, provider)
        return Stream(_flatten(batches), resp.close, batches)
