"""OpenTelemetry traces of the data plane: a server span per request, a client span per upstream attempt.

Spans follow the OpenTelemetry GenAI semantic conventions **1.37.0** (``SCHEMA_URL``): ``gen_ai.operation.name``,
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons`` (and ``gen_ai.input.messages`` /
``gen_ai.output.messages`` only for tenants whose logging content mode is ``full``), plus Tollway's own under
``tollway.*`` (tenant, project, route, deployment, route reason, cost, cached and reasoning tokens). Never a key,
a credential or a header: spans are built from the request's ``Outcome``, which holds none.

The cost model (the data plane's request costs well under a millisecond of CPU):

- ``Tracer.begin`` is the only work on the request path: a sampling decision by the SDK's sampler, and only when
  sampled (or when the client sent a ``traceparent``, which is then forwarded) a small ``RequestTrace``
  (``dataplane.record.trace_context``) that collects facts. No SDK span exists while the request runs.
- ``served`` / ``refused`` (the record step) build finished ``ReadableSpan``s with explicit timestamps and the
  trace's own ids, for sampled requests only, and hand them to a ``BatchSpanProcessor`` whose thread exports
  them over OTLP/HTTP (``opentelemetry-exporter-otlp-proto-http``), off the event loop, the request's bytes
  written directly (``dataplane.record.otlp_export``: a third of the SDK's encoding cost).

Configuration is the SDK's own: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` / ``_HEADERS`` / ``_TIMEOUT`` /
``_COMPRESSION`` / ``_CERTIFICATE`` for the exporter, ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` for
the sampler, ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` for the resource, ``OTEL_BSP_*`` for the batch
processor. Tracing is on when an endpoint is set (that environment, or ``--otlp-endpoint``) and not disabled
(``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``); ``--trace-sampling RATIO`` overrides the sampler with
``parentbased_traceidratio`` at that ratio.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from dataplane.core.accounting import Outcome
from dataplane.errors import ApiError
from dataplane.record.otlp_export import SpanBytesExporter
from dataplane.record.trace_context import AttemptSpan, RequestTrace, is_configured, parse_traceparent
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.runtime import Deployment, Key
from tollway.money import usd

log = logging.getLogger(__name__)

SEMCONV_VERSION = "1.37.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
DEFAULT_SERVICE_NAME = "tollway-dataplane"
SCOPE = InstrumentationScope("tollway.dataplane", "0.1.0", SCHEMA_URL)

# gen_ai.provider.name by provider type (the convention's well-known values; the mock is Tollway's own).
PROVIDER_NAMES = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic",
                  "bedrock": "aws.bedrock", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai",
                  "mock": "tollway.mock"}
# gen_ai.operation.name by surface (moderations and token counting have no convention value: Tollway's names).
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings",
              "moderations": "moderations", "count_tokens": "count_tokens"}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_RECORD = Decision.RECORD_AND_SAMPLE
_ROOT = Context()  # no parent: the sampler's root decision


def traces_url(endpoint: str) -> str:
    """``--otlp-endpoint`` is a base URL, like ``OTEL_EXPORTER_OTLP_ENDPOINT``: traces go to ``/v1/traces``."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


class Tracer:
    """Sampling decisions on the request path, spans at record time. Task-safe on one event loop (the
    processor's ``on_end`` is thread-safe); ``shutdown`` once, at stop (it blocks while flushing: off the loop)."""

    def __init__(self, processor: SpanProcessor, sampler: Sampler, resource: Resource,
                 root: TraceIdRatioBased | None = None) -> None:
        """``root``: the ratio sampler ``sampler`` (a ``ParentBased``) consults for a request without a parent; its
        decision is then taken here, as that sampler takes it, without the SDK's call (a third of ``begin``)."""
        self._processor = processor
        self.sampler = sampler
        self._resource = resource
        self._root_bound = root.bound if root is not None else None

    @classmethod
    def configured(cls, settings: DataPlaneSettings, environ: Mapping[str, str] | None = None) -> Tracer | None:
        """The tracer the settings and the ``OTEL_*`` environment ask for, or None when tracing is off."""
        env = os.environ if environ is None else environ
        if not is_configured(settings, env):
            return None
        sampler: Sampler
        root = None
        if settings.trace_sampling is not None:
            root = TraceIdRatioBased(settings.trace_sampling)
            sampler = ParentBased(root)
        else:  # the SDK's own reading of OTEL_TRACES_SAMPLER / _ARG (default: parentbased_always_on)
            sampler = TracerProvider(shutdown_on_exit=False).sampler
        resource = Resource.create({})  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
        ours: dict[str, Any] = {"tollway.region": settings.region, "tollway.node.id": settings.node_id}
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            ours["service.name"] = DEFAULT_SERVICE_NAME
        exporter = SpanBytesExporter(endpoint=traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else None)
        log.info("tracing on: OTLP/HTTP export, sampler %s, semantic conventions %s", sampler.get_description(),
                 SEMCONV_VERSION)
        return cls(BatchSpanProcessor(exporter), sampler, resource.merge(Resource(ours)), root)

    def begin(self, headers: Mapping[str, str]) -> RequestTrace | None:
        """The request's trace (``headers``: the client's): sampled, or unsampled but forwarding the client's
        ``traceparent``; None for neither."""
        traceparent = headers.get("traceparent")
        parent = parse_traceparent(traceparent, headers.get("tracestate")) if traceparent is not None else None
        if parent is None:
            trace_id = random.getrandbits(128) or 1
            if self._root_bound is not None:  # TraceIdRatioBased.should_sample's own test
                sampled = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self._root_bound
                return RequestTrace(trace_id, random.getrandbits(64) or 1, None, True) if sampled else None
            context = _ROOT
        else:
            trace_id = parent.trace_id
            remote = SpanContext(trace_id, parent.span_id, True,
                                 TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT))
            context = set_span_in_context(NonRecordingSpan(remote), Context())
        if self.sampler.should_sample(context, trace_id, "request", SpanKind.SERVER).decision is _RECORD:
            return RequestTrace(trace_id, random.getrandbits(64) or 1, parent, True)
        return RequestTrace(trace_id, 0, parent, False) if parent is not None else None

    def served(self, outcome: Outcome, trace: RequestTrace, response: Mapping[str, Any] | None = None) -> None:
        """The spans of a request that reached an upstream (sampled traces only)."""
        if not trace.sampled:
            return
        end_ns = int((outcome.started + outcome.duration_s) * 1e9)
        plan, dep = outcome.plan, outcome.deployment
        op = OPERATIONS.get(plan.request.surface, plan.request.surface)
        attrs = _request_attributes(op, plan.request.model, plan.request.payload, plan.key)
        who = outcome.attribution
        attrs.update({
            "tollway.project": (who.project if who is not None else "") or plan.key.project,
            "tollway.route": plan.route.name, "tollway.route.reason": trace.reason,
            "tollway.request.id": outcome.request_id, "tollway.snapshot": outcome.snapshot,
            "tollway.attempts": outcome.attempts, "tollway.cost.pico_usd": outcome.cost_pico,
            "tollway.cost.usd": usd(outcome.cost_pico), "http.response.status_code": outcome.status,
            "tollway.aborted": outcome.aborted,
        })
        answer = _answer_attributes(trace, dep, outcome)
        attrs.update(answer)
        if dep is not None:
            attrs["tollway.deployment"] = dep.name
            attrs["tollway.provider"] = dep.provider.name
            attrs["gen_ai.provider.name"] = PROVIDER_NAMES.get(dep.provider.type, dep.provider.type)
        if outcome.first_byte_s is not None:
            attrs["tollway.time_to_first_byte_s"] = outcome.first_byte_s
        if plan.key.tenant.content.mode == "full":
            _add_content(attrs, plan.request.payload, response, trace.finish_reasons)
        status = Status(StatusCode.ERROR) if outcome.status >= 400 else Status(StatusCode.UNSET)
        if outcome.status >= 400:
            last = trace.attempts[-1].failure if trace.attempts else None
            attrs["error.type"] = last.kind if last is not None else str(outcome.status)
        context = self._context(trace, trace.span_id)
        parent = self._parent(trace)
        self._processor.on_end(ReadableSpan(
            f"{op} {plan.request.model}", context, parent, self._resource, _clean(attrs), kind=SpanKind.SERVER,
            status=status, start_time=int(outcome.started * 1e9), end_time=end_ns, instrumentation_scope=SCOPE))
        upstream_end = None
        if outcome.upstream_s is not None and trace.attempts:
            upstream_end = trace.attempts[0].start_ns + int(outcome.upstream_s * 1e9)
        for i, attempt in enumerate(trace.attempts):
            is_answer = i == len(trace.attempts) - 1 and attempt.failure is None and outcome.status < 400
            self._processor.on_end(self._attempt_span(trace, context, op, i, attempt,
                                                      answer if is_answer else {}, upstream_end, end_ns))

    def refused(self, error: ApiError, trace: RequestTrace, request_id: str, started: float, snapshot: str,
                key: Key | None = None, model: str = "") -> None:
        """The span of a request the gateway answered itself (sampled traces only)."""
        if not trace.sampled:
            return
        attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                                 "tollway.request.id": request_id, "tollway.snapshot": snapshot,
                                 "http.response.status_code": error.status, "error.type": error.code or error.type}
        if key is not None:
            attrs.update({"tollway.tenant": key.tenant.name, "tollway.project": key.project,
                          "tollway.key.id": key.id, "tollway.route": model})
        self._processor.on_end(ReadableSpan(
            f"chat {model}" if model else "chat", self._context(trace, trace.span_id), self._parent(trace),
            self._resource, _clean(attrs), kind=SpanKind.SERVER,
            status=Status(StatusCode.ERROR) if error.status >= 500 else Status(StatusCode.UNSET),
            start_time=int(started * 1e9), end_time=time.time_ns(), instrumentation_scope=SCOPE))

    def _attempt_span(self, trace: RequestTrace, request: SpanContext, op: str, index: int, attempt: AttemptSpan,
                      answer: dict[str, Any], upstream_end: int | None, request_end: int) -> ReadableSpan:
        dep = attempt.deployment
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op, "gen_ai.provider.name": PROVIDER_NAMES.get(dep.provider.type,
                                                                                    dep.provider.type),
            "gen_ai.request.model": dep.upstream_model, "tollway.deployment": dep.name,
            "tollway.provider": dep.provider.name, "tollway.attempt": index + 1, **answer,
        }
        attrs.update(_server(dep))
        failure = attempt.failure
        end = attempt.end_ns or request_end
        if failure is not None:
            attrs["error.type"] = failure.kind
            if failure.status:
                attrs["http.response.status_code"] = failure.status
            status = Status(StatusCode.ERROR, failure.message)
        else:
            status = Status(StatusCode.UNSET)
            if answer and upstream_end is not None:  # the answer's body (a stream: its last event) came later
                end = min(max(end, upstream_end), request_end)
        return ReadableSpan(f"{op} {dep.upstream_model}", self._context(trace, attempt.span_id), request,
                            self._resource, _clean(attrs), kind=SpanKind.CLIENT, status=status,
                            start_time=attempt.start_ns, end_time=max(end, attempt.start_ns),
                            instrumentation_scope=SCOPE)

    @staticmethod
    def _context(trace: RequestTrace, span_id: int) -> SpanContext:
        state = TraceState.from_header([trace.parent.state]) if trace.parent is not None and trace.parent.state \
            else None
        return SpanContext(trace.trace_id, span_id, False, _SAMPLED, state)

    @staticmethod
    def _parent(trace: RequestTrace) -> SpanContext | None:
        if trace.parent is None:
            return None
        flags = _SAMPLED if trace.parent.sampled else TraceFlags(TraceFlags.DEFAULT)
        return SpanContext(trace.trace_id, trace.parent.span_id, True, flags)

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread (blocks: call it off the event loop)."""
        self._processor.shutdown()

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self._processor.force_flush(timeout_ms)


def _request_attributes(op: str, model: str, payload: Mapping[str, Any], key: Key) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.operation.name": op, "gen_ai.request.model": model,
                             "tollway.tenant": key.tenant.name, "tollway.key.id": key.id}
    for name, attr in (("max_tokens", "gen_ai.request.max_tokens"),
                       ("max_completion_tokens", "gen_ai.request.max_tokens"),
                       ("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                       ("seed", "gen_ai.request.seed"), ("n", "gen_ai.request.choice.count")):
        value = payload.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attrs[attr] = value
    return attrs


def _answer_attributes(trace: RequestTrace, dep: Deployment | None, outcome: Outcome) -> dict[str, Any]:
    """What the request span and the answering attempt's span share: the answer's model, usage, finish."""
    attrs: dict[str, Any] = {}
    model = trace.response_model or (dep.upstream_model if dep is not None else "")
    if model and outcome.status < 400:
        attrs["gen_ai.response.model"] = model
    if trace.response_id:
        attrs["gen_ai.response.id"] = trace.response_id
    if trace.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = list(trace.finish_reasons)
    usage = outcome.usage
    if usage is not None:
        attrs.update({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                      "gen_ai.usage.output_tokens": usage.completion_tokens,
                      "tollway.usage.cached_input_tokens": usage.cached_tokens,
                      "tollway.usage.reasoning_output_tokens": usage.reasoning_tokens})
        if usage.cache_write_tokens or usage.cache_write_1h_tokens:
            attrs["tollway.usage.cache_write_input_tokens"] = usage.cache_write_tokens + usage.cache_write_1h_tokens
        if usage.is_estimated:
            attrs["tollway.usage.source"] = usage.source
    return attrs


def _server(dep: Deployment) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of the upstream: the host only (a URL may carry userinfo)."""
    return _server_of(dep.provider.base_url) if dep.provider.base_url else {}


@functools.lru_cache(maxsize=256)
def _server_of(base_url: str) -> dict[str, Any]:
    """(Read-only: shared by every span of the provider.)"""
    try:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    return {"server.address": parts.hostname or "", "server.port": port}


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if isinstance(part, str):
            parts.append({"type": "text", "content": part})
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append({"type": "text", "content": part["text"]})
        elif isinstance(part, dict):
            parts.append({"type": str(part.get("type", "unknown"))})  # images and files: their kind, not data
    return parts


def _message(message: Any, finish_reason: str | None = None) -> dict[str, Any] | None:
    """An OpenAI chat message in the conventions' message format (role, parts; tool calls and their results)."""
    if not isinstance(message, dict):
        return None
    parts = _parts(message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                          "arguments": fn.get("arguments")})
    role = message.get("role")
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                  "response": message.get("content")}]
    out: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    return out


def _add_content(attrs: dict[str, Any], payload: Mapping[str, Any], response: Mapping[str, Any] | None,
                 finish_reasons: list[str]) -> None:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` (JSON strings): only for ``full`` tenants."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        converted = [m for m in map(_message, messages) if m is not None]
        attrs["gen_ai.input.messages"] = orjson.dumps(converted).decode()
    elif isinstance(payload.get("input") or payload.get("prompt"), str | list):
        text = payload.get("input") or payload.get("prompt")
        attrs["gen_ai.input.messages"] = orjson.dumps([{"role": "user", "parts": _parts(text)}]).decode()
    if response is not None:
        out = _message(response, finish_reasons[0] if finish_reasons else None)
        if out is not None:
            attrs["gen_ai.output.messages"] = orjson.dumps([out]).decode()


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes as OTLP takes them: no empty values."""
    return {k: v for k, v in attrs.items() if v is not None and v != ""}
