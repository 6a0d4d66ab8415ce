"""The OpenAI Responses API (``POST /v1/responses``) as a dialect of the one request path.

What the OpenAI Agents SDK and LangChain's ``ChatOpenAI(use_responses_api=True)`` call. The body is translated to
the hub (``dataplane.translate.responses_to_hub``) to be validated, authorized, limited and routed like chat;
the client's own body travels along (``HubRequest.native``), so a deployment that speaks the Responses API
natively (``serves: [responses]`` on an ``openai`` provider) receives it unchanged and its answer passes back
unchanged, while every other deployment serves the translation statelessly (``hub_to_responses``: answers say
``store: false``).

``previous_response_id`` works where the provider keeps state: the response ids the client sees are the
upstream's, wrapped (``ResponseIds``) with the deployment that served it and an HMAC, so any data plane of the
region sends the follow-up to that deployment with the upstream's id. A follow-up to a translated answer, or an
id this gateway did not issue, is refused with a 400 naming why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from dataplane.api.appstate import error_response
from dataplane.api.openai import failure_response
from dataplane.api.pipeline import Inbound, serve
from dataplane.api.streaming import SEPARATOR, StreamFormat, StreamResult, accumulate, note_usage
from dataplane.core.content import MessageAccumulator
from dataplane.core.decide import RequestFacts, RoutePlan, authenticate, plan_for, serves_responses_natively
from dataplane.errors import ApiError, UpstreamFailure, invalid, quoted
from dataplane.translate.anthropic_common import Untranslatable
from dataplane.translate.hub_to_responses import ResponsesEventWriter, error_event, response_object
from dataplane.translate.responses_to_hub import hub_request

_WRAPPED = "resp_tw"
_TAG_BYTES = 12


class ResponseIds:
    """Opaque, authenticated response ids: ``resp_tw<base64url(deployment \\0 upstream id \\0 tag)>``.

    The key is derived from a secret every data plane of a region shares (the data-plane token), so any of them
    can route a follow-up; without one (tests, one process) it is random. Immutable."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | None) -> None:
        seed = secret.encode() if secret else os.urandom(32)
        self._key = hashlib.sha256(b"tollway response ids\0" + seed).digest()

    def wrap(self, deployment: str, upstream_id: str) -> str:
        raw = f"{deployment}\0{upstream_id}".encode()
        tag = hmac.new(self._key, raw, hashlib.sha256).digest()[:_TAG_BYTES]
        return _WRAPPED + base64.urlsafe_b64encode(raw + b"\0" + tag).decode().rstrip("=")

    def unwrap(self, wrapped: str) -> tuple[str, str] | None:
        """(deployment, upstream id) of an id this gateway issued, else None."""
        if not wrapped.startswith(_WRAPPED):
            return None
        text = wrapped[len(_WRAPPED):]
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            return None
        # The tag is binary and may hold a NUL itself: it is the last _TAG_BYTES, after the separator.
        raw, sep, tag = data[:-_TAG_BYTES - 1], data[-_TAG_BYTES - 1:-_TAG_BYTES], data[-_TAG_BYTES:]
        if sep != b"\0" or not hmac.compare_digest(tag, hmac.new(self._key, raw, hashlib.sha256).digest()[:_TAG_BYTES]):
            return None
        deployment, _, upstream_id = raw.decode(errors="replace").partition("\0")
        return deployment, upstream_id


class ResponsesStream:
    """Responses API events out: the native events of a deployment that speaks the API (ids wrapped), or the
    translation of hub chunks (``ResponsesEventWriter``). Which one it is shows in the first payload."""

    __slots__ = ("_accumulator", "_deployment", "_events", "_ids", "_native", "_previous", "_upstream_id",
                 "_wrapped", "_writer")

    def __init__(self, plan: RoutePlan, ids: ResponseIds, accumulator: MessageAccumulator | None) -> None:
        request = plan.request.native or {}
        self._writer = ResponsesEventWriter(new_response_id(), request, int(time.time()))
        self._ids = ids
        self._deployment = plan.candidates[0].name if plan.candidates else ""
        self._accumulator = accumulator
        self._native: bool | None = None
        self._upstream_id = b""
        self._wrapped = b""
        self._events = 0  # native events relayed: the next sequence number
        # A follow-up's upstream reply restates the upstream's previous id: the client sees the one it sent.
        previous = request.get("previous_response_id")
        self._previous = (orjson.dumps(previous), orjson.dumps(ids.wrap(self._deployment, previous))) \
            if isinstance(previous, str) else None

    def frame(self, payloads: list[bytes], result: StreamResult) -> bytes:
        if not payloads:
            return b""
        note_usage(payloads, SEPARATOR.join(payloads), result)
        if self._native is None:
            self._native = b'"type":"response.' in payloads[0] or b'"type": "response.' in payloads[0]
        if self._native:
            return b"".join(self._native_event(p) for p in payloads)
        if self._accumulator is not None:
            accumulate(self._accumulator, payloads)
        return b"".join(event for payload in payloads for event in self._writer.feed(payload))

    def _native_event(self, payload: bytes) -> bytes:
        if not self._upstream_id:
            try:
                event: Any = orjson.loads(payload)
            except orjson.JSONDecodeError:
                event = None
            response = event.get("response") if isinstance(event, dict) else None
            if isinstance(response, dict) and isinstance(response.get("id"), str):
                self._upstream_id = orjson.dumps(response["id"])
                self._wrapped = orjson.dumps(self._ids.wrap(self._deployment, response["id"]))
        if self._upstream_id:
            payload = payload.replace(self._upstream_id, self._wrapped)
        if self._previous is not None:
            payload = payload.replace(*self._previous)
        self._events += 1
        kind = _event_type(payload)
        return b"event: " + kind + b"\ndata: " + payload + b"\n\n"

    def done(self) -> bytes:
        return b"" if self._native else b"".join(self._writer.finish())

    def error(self, err: ApiError) -> bytes:
        if self._native:
            # The client holds the upstream's response: no second response.created for one of ours, only the
            # API's error event, numbered after the upstream's events (the SDK raises on it).
            return error_event(self._events, err.message, err.code or "server_error")
        return b"".join(self._writer.error(err.message, err.code or "server_error"))


def _event_type(payload: bytes) -> bytes:
    start = payload.find(b'"type"')
    if start < 0:
        return b"message"
    first = payload.find(b'"', payload.find(b":", start) + 1)
    end = payload.find(b'"', first + 1)
    return payload[first + 1:end] if first > 0 and end > first else b"message"


def new_response_id() -> str:
    return "resp_" + os.urandom(24).hex()


class ResponsesDialect:
    """Task-safe: holds only the immutable id wrapper."""

    __slots__ = ("ids",)

    def __init__(self, ids: ResponseIds) -> None:
        self.ids = ids

    def authorization(self, request: Inbound) -> str | None:
        return request.headers.get("Authorization")

    def plan(self, facts: RequestFacts) -> RoutePlan | ApiError:
        key = authenticate(facts.runtime, facts.authorization, facts.now, facts.checked)
        if isinstance(key, ApiError):
            return key
        try:
            body: Any = orjson.loads(facts.body)
        except orjson.JSONDecodeError:
            return invalid("the request body is not valid JSON")
        if not isinstance(body, dict):
            return invalid("the request body must be a JSON object")
        previous = body.get("previous_response_id")
        pinned: tuple[str, str] | None = None
        if previous is not None:
            if not isinstance(previous, str):
                return invalid("'previous_response_id' must be a string", "previous_response_id")
            pinned = self.ids.unwrap(previous)
            if pinned is None:
                # Also what a follow-up to a translated answer gets (its id is not wrapped): the message says why,
                # since that client was just given the id.
                return ApiError(400, f"Previous response with id {quoted(previous)} not found: only responses of "
                                     "deployments that keep state can be continued (answers served statelessly "
                                     "say store: false); send the whole conversation in 'input' instead",
                                "invalid_request_error", "previous_response_not_found", "previous_response_id")
        payload = hub_request({k: v for k, v in body.items() if k != "previous_response_id"})
        if isinstance(payload, Untranslatable):
            return ApiError(400, payload.message, "invalid_request_error", "invalid_request", payload.param)
        plan = plan_for(facts, key, payload, native=body, dialect="responses")
        if isinstance(plan, ApiError) or pinned is None:
            return plan
        deployment, upstream_id = pinned
        held = [d for d in plan.candidates if d.name == deployment]
        if not held or not serves_responses_natively(held[0]):
            return ApiError(400, f"the response {quoted(str(previous))} is held by deployment {deployment!r}, "
                                 "which cannot serve this request here: send the whole conversation in 'input' instead",
                            "invalid_request_error", "previous_response_unavailable", "previous_response_id")
        native = {**body, "previous_response_id": upstream_id}
        return replace(plan, candidates=(held[0],), request=replace(plan.request, native=native))

    def error(self, err: ApiError, headers: dict[str, str]) -> web.Response:
        return error_response(err, headers)

    def failure(self, failure: UpstreamFailure, headers: dict[str, str]) -> web.Response:
        return failure_response(failure, headers)

    def complete(self, body: bytes, answer: Any, plan: RoutePlan) -> bytes:
        if not isinstance(answer, dict):
            answer = {}
        if answer.get("object") == "response":  # a native answer: passed through, its id wrapped
            upstream_id, previous = answer.get("id"), answer.get("previous_response_id")
            if isinstance(upstream_id, str) and plan.candidates:
                answer["id"] = self.ids.wrap(plan.candidates[0].name, upstream_id)
            if isinstance(previous, str) and plan.candidates:  # held by the same deployment (the plan pinned it)
                answer["previous_response_id"] = self.ids.wrap(plan.candidates[0].name, previous)
            return orjson.dumps(answer)
        return orjson.dumps(response_object(answer, plan.request.native or {}, new_response_id(), int(time.time())))

    def stream(self, plan: RoutePlan, accumulator: MessageAccumulator | None) -> StreamFormat:
        return ResponsesStream(plan, self.ids, accumulator)


RESPONSES = web.AppKey("responses", ResponsesDialect)


async def create(request: Inbound) -> web.StreamResponse:
    """``POST /v1/responses``."""
    return await serve(request, request.app[RESPONSES])
