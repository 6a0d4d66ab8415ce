"""The Anthropic Messages API (``POST /v1/messages``) as a dialect of the one request path.

An Anthropic client (the official ``anthropic`` SDK) authenticates with ``x-api-key: tw_...`` (or a Bearer
header), sends a Messages body, and gets Messages answers, Anthropic SSE events and Anthropic error envelopes.
In between, the request is an OpenAI chat completion like any other: ``openai_request`` translates it inbound,
``plan_for`` validates and routes it, any adapter serves it (an Anthropic deployment translates it back out),
and ``anthropic_message``/``EventWriter`` translate the answer for the client. So routing, residency, limits,
budgets, failover, health and records cannot differ between the two APIs.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from dataplane.api.pipeline import Inbound, serve
from dataplane.api.streaming import SEPARATOR, StreamFormat, StreamResult, accumulate, note_usage
from dataplane.core.content import MessageAccumulator
from dataplane.core.decide import RequestFacts, RoutePlan, authenticate, plan_for
from dataplane.errors import ApiError, UpstreamFailure, retry_headers, upstream_error
from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.anthropic_to_hub import EventWriter, anthropic_error, anthropic_message, openai_request


def _response(status: int, message: str, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=anthropic_error(status, message), headers=headers,
                        content_type="application/json")


class AnthropicStream:
    """OpenAI chunk payloads in, Anthropic's event sequence out (``message_start`` … ``message_stop``)."""

    __slots__ = ("_accumulator", "_writer")

    def __init__(self, model: str, accumulator: MessageAccumulator | None = None) -> None:
        self._writer = EventWriter(model)
        self._accumulator = accumulator

    def frame(self, payloads: list[bytes], result: StreamResult) -> bytes:
        if not payloads:
            return b""
        note_usage(payloads, SEPARATOR.join(payloads), result)
        if self._accumulator is not None:
            accumulate(self._accumulator, payloads)
        feed = self._writer.feed
        return b"".join(event for payload in payloads for event in feed(payload))

    def done(self) -> bytes:
        return b"".join(self._writer.finish())

    def error(self, err: ApiError) -> bytes:
        return b"event: error\ndata: " + anthropic_error(err.status, err.message) + b"\n\n"


class AnthropicDialect:
    """Stateless; task-safe."""

    def authorization(self, request: Inbound) -> str | None:
        key = request.headers.get("x-api-key")
        return f"Bearer {key.strip()}" if key else request.headers.get("Authorization")

    counting = False  # ``POST /v1/messages/count_tokens``

    def plan(self, facts: RequestFacts) -> RoutePlan | ApiError:
        authorization = facts.authorization
        key = authenticate(facts.runtime, authorization, facts.now, facts.checked)
        if isinstance(key, ApiError):
            if key.status == 401 and authorization is None:
                return ApiError(401, "missing API key: send 'x-api-key: tw_...'", key.type, key.code)
            return key
        try:
            parsed: Any = orjson.loads(facts.body)
        except orjson.JSONDecodeError:
            return ApiError(400, "the request body is not valid JSON", "invalid_request_error")
        if self.counting and isinstance(parsed, dict):
            # A count_tokens body is a Messages body without max_tokens; translated only to be routed and
            # estimated, sent as it is where the provider counts.
            payload = openai_request({**parsed, "max_tokens": 1})
        else:
            payload = openai_request(parsed)
        if isinstance(payload, Untranslatable):
            return ApiError(400, payload.message, "invalid_request_error", "invalid_request", payload.param)
        if self.counting:
            return plan_for(facts, key, payload, "count_tokens", native=parsed, dialect="anthropic")
        return plan_for(facts, key, payload)

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response:
        return _response(err.status, err.message, headers)

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
        if failure.kind == "4xx":
            message = failure.message
            try:
                parsed = orjson.loads(failure.body) if failure.body else None
            except orjson.JSONDecodeError:
                parsed = None
            error = parsed.get("error") if isinstance(parsed, dict) else None
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                message = error["message"]
            return _response(failure.status or 400, message, headers)
        err = upstream_error(failure)
        return _response(err.status, err.message, {**headers, **retry_headers(failure)})

    def complete(self, body: bytes, answer: Any, plan: RoutePlan) -> bytes:
        if self.counting:
            return body  # ``{"input_tokens": N}``: the provider's own, or the gateway's estimate
        message = anthropic_message(answer if isinstance(answer, dict) else {})
        return orjson.dumps(message)

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat:
        return AnthropicStream(plan.request.model, accumulator)


class CountTokensDialect(AnthropicDialect):
    """``POST /v1/messages/count_tokens``: exact where the provider counts, else an estimate (marked in the
    ``x-tollway-token-count`` header). Rate-limited and recorded at zero cost."""

    counting = True


ANTHROPIC = AnthropicDialect()
COUNT_TOKENS = CountTokensDialect()


async def messages(request: Inbound) -> web.StreamResponse:
    """``POST /v1/messages``: the Anthropic Messages API over the same request path."""
    return await serve(request, ANTHROPIC)


async def count_tokens(request: Inbound) -> web.StreamResponse:
    """``POST /v1/messages/count_tokens``: the anthropic SDK's ``messages.count_tokens`` (what Claude Code calls)."""
    return await serve(request, COUNT_TOKENS)
