"""The built-in mock provider: a local model server in the exact OpenAI wire formats, for demos, tests and benches.

What it answers comes from pure, deterministic modules (``model`` for chat, ``schema``, ``surfaces``,
``mock_text``): chat completions that call offered tools when asked,
JSON that validates against a requested schema, ``n`` choices, logprobs; embeddings of the deployment's
dimensions; legacy completions; moderations; token counts. Token counts are realistic (about four characters per
token, plus per-message overhead) so cost accounting and budgets behave as against a real provider.
``provider.mock`` sets a delay before the answer starts and a streaming pace in tokens per second.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from dataplane.core.validate import HubRequest
from dataplane.errors import UpstreamFailure, error_body
from dataplane.snapshot.runtime import Deployment
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.mock import model, surfaces
from dataplane.upstream.adapters.mock import text as mock_text

DEFAULT_EMBEDDING_DIMENSIONS = 8


class MockAdapter:
    """Stateless; task-safe."""

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        try:
            return await self._send(deployment, request, timeout_s)
        except ValueError as exc:  # what a model server refuses (bad input, dimensions too large): its 400
            message = str(exc)
            raise UpstreamFailure("4xx", message, 400, error_body(message, "invalid_request_error")) from None

    async def _send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if provider.mock_delay_ms:
            if provider.mock_delay_ms / 1000 > timeout_s:
                await asyncio.sleep(timeout_s)
                raise UpstreamFailure("timeout", f"provider {provider.name!r} timed out")
            await asyncio.sleep(provider.mock_delay_ms / 1000)
        payload, name = request.payload, deployment.upstream_model
        surface = request.surface
        if surface == "embeddings":
            dims = deployment.embedding_dimensions or DEFAULT_EMBEDDING_DIMENSIONS
            return Complete(orjson.dumps(surfaces.embeddings(payload, name, dims)))
        if surface == "moderations":
            return Complete(orjson.dumps(surfaces.moderation(payload, name)))
        if surface == "count_tokens":
            body = request.native if request.native is not None else payload
            return Complete(orjson.dumps({"input_tokens": mock_text.count_message_tokens(body)}), native=True)
        created = int(time.time())
        max_tokens = request.max_tokens
        if surface == "completions":
            ident = "cmpl-mock" + os.urandom(12).hex()
            if not request.stream:
                return Complete(orjson.dumps(surfaces.text_completion(payload, name, ident, created, max_tokens)))
            return Stream(self._paced(deployment, surfaces.text_completion_chunks(payload, name, ident, created,
                                                                                max_tokens)), lambda: None)
        ident = "chatcmpl-mock" + os.urandom(12).hex()
        if not request.stream:
            return Complete(orjson.dumps(model.chat_completion(payload, name, ident, created, max_tokens)))
        return Stream(self._paced(deployment, model.chat_chunks(payload, name, ident, created, max_tokens)),
                      lambda: None)

    async def _paced(self, deployment: Deployment, chunks: list[dict[str, Any]]) -> AsyncGenerator[bytes, None]:
        pace = deployment.provider.mock_tokens_per_second
        for chunk in chunks:
            if pace:
                await asyncio.sleep(_tokens_in(chunk) / pace)
            yield orjson.dumps(chunk)


def _tokens_in(chunk: dict[str, Any]) -> int:
    """The tokens a chunk carries (its text), so a stream keeps the provider's pace."""
    text = ""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        text += (delta.get("content") or "") if isinstance(delta, dict) else ""
        text += choice.get("text") or ""
    return mock_text.count_tokens(text)
