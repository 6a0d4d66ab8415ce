"""The OpenAI dialect: chat completions, embeddings, legacy completions, moderations, and the model list.

``POST /v1/chat/completions``, ``/v1/embeddings``, ``/v1/completions``, ``/v1/moderations``; ``GET /v1/models``
and ``/v1/models/{id}``. Each surface is its own hub format (chat completions is the hub of the generative
APIs, shared/DESIGN.md §7), so requests need no translation inbound and answers pass through unchanged: the
JSON body as the upstream sent it, SSE chunks as they arrive (``OpenAIStream`` drops only the usage-only chunk
the gateway asked for when the client did not). Upstream 4xx bodies that are OpenAI errors pass through too;
every other failure becomes an OpenAI error of ours.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from dataplane.api.appstate import STATE, error_response, request_id, tollway_headers
from dataplane.api.pipeline import Inbound, serve
from dataplane.api.streaming import SEPARATOR, StreamFormat, StreamResult, accumulate, note_usage
from dataplane.core.content import MessageAccumulator
from dataplane.core.decide import RequestFacts, RoutePlan, authenticate, decide
from dataplane.core.validate import Surface
from dataplane.errors import NO_SNAPSHOT, ApiError, UpstreamFailure, error_body, retry_headers, upstream_error
from dataplane.snapshot.runtime import Key


def failure_response(failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
    """Upstream 4xx bodies (already scrubbed) pass through when they are OpenAI errors; all else is ours."""
    if failure.kind == "4xx" and failure.body:
        try:
            parsed = orjson.loads(failure.body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return web.Response(status=failure.status, body=failure.body, headers=headers,
                                content_type="application/json")
        err = ApiError(failure.status, failure.message, "invalid_request_error", "upstream_rejected")
    else:
        err = upstream_error(failure)
        headers = {**headers, **retry_headers(failure)}
    return web.Response(status=err.status, body=err.body(), headers=headers, content_type="application/json")


class OpenAIStream:
    """The OpenAI wire format: ``data: <chunk>`` events, then ``data: [DONE]``. ``accumulator``, when given (the
    tenant's log keeps content), rebuilds the assistant message from the chunks."""

    __slots__ = ("_accumulator", "_include_usage")

    def __init__(self, include_usage: bool, accumulator: MessageAccumulator | None = None) -> None:
        self._include_usage = include_usage
        self._accumulator = accumulator

    def frame(self, payloads: list[bytes], result: StreamResult) -> bytes:
        if self._accumulator is not None:
            accumulate(self._accumulator, payloads)
        return _frame(payloads, result, self._include_usage)

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, err: ApiError) -> bytes:
        return b"data: " + error_body(err.message, err.type, err.code) + b"\n\n"


def _frame(payloads: list[bytes], result: StreamResult, include_usage: bool) -> bytes:
    """The SSE bytes for ``payloads``, noting the usage into ``result``; the usage-only chunk is dropped when
    the client did not ask for it, since the gateway forced ``include_usage`` on upstream."""
    if not payloads:
        return b""
    joined = SEPARATOR.join(payloads)
    drop = note_usage(payloads, joined, result, include_usage)
    if drop:
        if len(drop) == len(payloads):
            return b""
        if drop == [len(payloads) - 1]:  # the usual: the usage chunk ends the stream
            joined = joined[:len(joined) - len(SEPARATOR) - len(payloads[-1])]
        else:
            joined = SEPARATOR.join([p for i, p in enumerate(payloads) if i not in drop])
    return b"data: " + joined + b"\n\n"


class OpenAIDialect:
    """One OpenAI endpoint (``surface``): answers pass through unchanged. Stateless; task-safe."""

    __slots__ = ("surface",)

    def __init__(self, surface: Surface = "chat") -> None:
        self.surface: Surface = surface

    def authorization(self, request: Inbound) -> str | None:
        return request.headers.get("Authorization")

    def plan(self, facts: RequestFacts) -> RoutePlan | ApiError:
        return decide(facts, self.surface)

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response:
        return error_response(err, headers)

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
        return failure_response(failure, headers)

    def complete(self, body: bytes, answer: Any, plan: RoutePlan) -> bytes:
        return body

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat:
        return OpenAIStream(plan.request.include_usage, accumulator)


OPENAI = OpenAIDialect()
EMBEDDINGS = OpenAIDialect("embeddings")
COMPLETIONS = OpenAIDialect("completions")
MODERATIONS = OpenAIDialect("moderations")


async def chat_completions(request: Inbound) -> web.StreamResponse:
    return await serve(request, OPENAI)


async def embeddings(request: Inbound) -> web.StreamResponse:
    return await serve(request, EMBEDDINGS)


async def completions(request: Inbound) -> web.StreamResponse:
    return await serve(request, COMPLETIONS)


async def moderations(request: Inbound) -> web.StreamResponse:
    return await serve(request, MODERATIONS)


def _model_object(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tollway"}


def _caller(request: web.Request) -> tuple[Key, dict[str, str]] | web.Response:
    """The key behind a models request and the headers of its answer, or the error answer."""
    rid = request_id(request)
    runtime = request.app[STATE].holder.runtime
    if runtime is None:
        return error_response(NO_SNAPSHOT, tollway_headers(rid, ""))
    headers = tollway_headers(rid, runtime.version)
    key = authenticate(runtime, request.headers.get("Authorization"), time.time(), request.app[STATE].checked_keys)
    if isinstance(key, ApiError):
        return error_response(key, headers)
    return key, headers


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one route the key may use (404 in OpenAI's format otherwise)."""
    caller = _caller(request)
    if isinstance(caller, web.Response):
        return caller
    key, headers = caller
    name = request.match_info["model"]
    if name not in key.models:
        return error_response(ApiError(404, f"The model '{name[:64]}' does not exist or you do not have access "
                                            "to it.", "invalid_request_error", "model_not_found", "model"), headers)
    return web.Response(body=orjson.dumps(_model_object(name)), headers=headers, content_type="application/json")


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the routes the key may use."""
    caller = _caller(request)
    if isinstance(caller, web.Response):
        return caller
    key, headers = caller
    data = [_model_object(name) for name in key.models]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), headers=headers,
                        content_type="application/json")
