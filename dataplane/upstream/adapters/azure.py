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

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

import orjson

from dataplane.core.cost_bound import cap_output
from dataplane.core.validate import HubRequest
from dataplane.errors import UpstreamFailure, error_body
from dataplane.snapshot.runtime import Deployment, Provider
from dataplane.upstream.adapters import Batches, Complete, LastBatch, Stream
from dataplane.upstream.adapters.event_stream import flatten
from dataplane.upstream.adapters.wire import SseBatches, check_credential, header_lines, post, read_whole
from dataplane.upstream.client import UpstreamClient

_PATHS = {"chat": "chat/completions", "embeddings": "embeddings", "completions": "completions"}


def azure_url(deployment: Deployment, surface: str = "chat") -> str:
    p = deployment.provider
    path = _PATHS.get(surface)
    if path is None:
        raise UpstreamFailure("unsupported", f"provider {p.name!r} (Azure) has no {surface} endpoint here")
    return (f"{p.base_url}/openai/deployments/{quote(deployment.upstream_model, safe='')}/{path}"
            f"?api-version={quote(p.api_version, safe='')}")


def azure_body(request: HubRequest, deployment: Deployment) -> bytes:
    body: dict[str, Any] = {k: v for k, v in request.payload.items() if k != "model"}
    if request.surface in ("chat", "completions"):
        body = cap_output(body, deployment)
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


def is_filter_only(payload: bytes) -> bool:
    """Azure's prompt-filter chunk: empty ``choices`` and no ``usage``."""
    if b"prompt_filter_results" not in payload:
        return False
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices") and chunk.get("usage") is None


async def _without_filter_chunks(batches: Batches) -> AsyncGenerator[list[bytes], None]:
    try:
        async for batch in batches:
            if any(b"prompt_filter_results" in p for p in batch):
                kept = [p for p in batch if not is_filter_only(p)]
                batch = LastBatch(kept) if isinstance(batch, LastBatch) else kept
                if not kept and not isinstance(batch, LastBatch):
                    continue
            yield batch
    finally:
        await batches.aclose()


class AzureAdapter:
    """Task-safe: holds only the shared upstream client, owned and closed by the application."""

    def __init__(self, client: UpstreamClient) -> None:
        self._client = client

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        check_credential(provider)
        if not provider.api_version:
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} has no api_version")
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Accept-Encoding": "identity", "User-Agent": "tollway"}
        if provider.credential:
            headers["api-key"] = provider.credential
        resp, deadline = await post(self._client, provider, azure_url(deployment, request.surface),
                                    header_lines(headers),
                                    azure_body(request, deployment), timeout_s, _status_failure)
        if not request.stream:
            return Complete(await read_whole(resp, provider, deadline))
        batches = _without_filter_chunks(SseBatches(resp, provider))
        return Stream(flatten(batches), resp.close, batches)
