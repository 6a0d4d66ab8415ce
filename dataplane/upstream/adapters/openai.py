"""Adapter for OpenAI-compatible upstreams (OpenAI, vLLM, …), over the shared lean ``UpstreamClient``.

The request body is the client's, with ``model`` replaced by the deployment's upstream model and, when
streaming, ``stream_options.include_usage`` forced on so the gateway always learns the token counts. Client
exceptions are translated into ``UpstreamFailure`` here and nowhere else. The upstream credential never
appears in an error: upstream 401/403 bodies are dropped, other 4xx bodies are scrubbed of it.
"""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.core.cost_bound import cap_output
from dataplane.core.decide import serves_responses_natively
from dataplane.core.validate import HubRequest
from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Deployment, Provider
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.event_stream import flatten
from dataplane.upstream.adapters.wire import SseBatches, check_credential, post, read_whole
from dataplane.upstream.client import UpstreamClient

PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings", "completions": "/completions",
         "moderations": "/moderations"}


def is_native_responses(deployment: Deployment, request: HubRequest) -> bool:
    """Whether the client's Responses API body goes to this deployment as it is (it speaks the API)."""
    return request.dialect == "responses" and request.native is not None and serves_responses_natively(deployment)


def upstream_body(deployment: Deployment, request: HubRequest) -> bytes:
    if is_native_responses(deployment, request):
        assert request.native is not None
        native: dict[str, Any] = dict(request.native)
        native["model"] = deployment.upstream_model
        asked = native.get("max_output_tokens")
        if deployment.max_output_tokens and (not isinstance(asked, int) or asked > deployment.max_output_tokens):
            native["max_output_tokens"] = deployment.max_output_tokens  # the reservation's bound holds upstream
        return orjson.dumps(native)
    body: dict[str, Any] = dict(request.payload)
    if request.surface in ("chat", "completions"):
        body = cap_output(body, deployment)
    body["model"] = deployment.upstream_model
    if request.stream:
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps(body)


def upstream_path(deployment: Deployment, request: HubRequest) -> str:
    if is_native_responses(deployment, request):
        return "/responses"
    path = PATHS.get(request.surface)
    if path is None:
        raise UpstreamFailure("unsupported", f"provider {deployment.provider.name!r} has no {request.surface} "
                                             "endpoint")
    return path


def _target(deployment: Deployment, path: str) -> tuple[str, str]:
    p: Provider = deployment.provider
    # identity: the client does not decompress (no upstream compresses unasked, and JSON over a fast link gains
    # little); it refuses a compressed answer rather than pass it through.
    headers = ("Content-Type: application/json\r\nAccept: application/json\r\nAccept-Encoding: identity\r\n"
               "User-Agent: tollway\r\n")
    if p.credential:
        headers += f"Authorization: Bearer {p.credential}\r\n"
    return f"{p.base_url}{path}", headers


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


class OpenAIAdapter:
    """Task-safe: holds only the shared upstream client, owned and closed by the application."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        check_credential(provider)
        native = is_native_responses(deployment, request)
        url, headers = _target(deployment, upstream_path(deployment, request))
        resp, deadline = await post(self._client, provider, url, headers, upstream_body(deployment, request),
                                    timeout_s, _status_failure)
        if not request.stream:
            return Complete(await read_whole(resp, provider, deadline), native=native)
        batches = SseBatches(resp, provider, _responses_end if native else None)
        return Stream(flatten(batches), resp.close, batches, native=native)


def _responses_end(payloads: list[bytes]) -> bool:
    # The Responses API ends its stream with the response's final event and no [DONE].
    return any(b'"response.completed"' in p or b'"response.failed"' in p or b'"response.incomplete"' in p
               for p in payloads)
