"""The OTLP/HTTP trace export of the data plane: the SDK's exporter, with the request's bytes written directly.

The SDK's exporter builds a protobuf message object per span, attribute and value, then serializes it: about
100 µs of CPU per span of ours (some 25 attributes), more than the whole request the span describes, and spent
holding the GIL in the batch processor's thread while the event loop has requests to serve. ``encode_request``
writes the same ``ExportTraceServiceRequest`` bytes with ``tollway.protowire`` (the message the SDK's
``encode_spans`` builds, field for field: the tests parse both and compare), at a small fraction of that;
``SpanBytesExporter`` sends them through the SDK exporter's own HTTP client, so the endpoint, headers, timeout,
compression, certificates and retries stay the SDK's (``OTEL_EXPORTER_OTLP_*``). Spans with events or links,
which the data plane never makes, go to the SDK's encoder, as does everything when the exporter's HTTP client
is not where this version of the SDK keeps it.

Field numbers: ``opentelemetry/proto/trace/v1/trace.proto``, ``common/v1/common.proto``,
``resource/v1/resource.proto``, ``collector/trace/v1/trace_service.proto``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dataplane.gil import finer_gil_switching
from tollway.protowire import I32, I64, LEN, ONE_BYTE_VARINTS, VARINT, delimited, double, fixed32, fixed64, tag, varint

log = logging.getLogger(__name__)

# ExportTraceServiceRequest.resource_spans; ResourceSpans.resource, .scope_spans, .schema_url (ScopeSpans: the
# same numbers for scope, spans, schema_url); Resource.attributes; InstrumentationScope.name, .version, .attributes
_RESOURCE_SPANS = _RESOURCE = _SCOPE = _NAME = _ATTRIBUTE = _VALUES = _STRING_KEY = tag(1, LEN)
_SCOPE_SPANS = _SPANS = _VERSION = _KV_VALUE = tag(2, LEN)
_SCHEMA_URL = _SCOPE_ATTRIBUTE = tag(3, LEN)
# Span
_TRACE_ID, _SPAN_ID, _TRACE_STATE, _PARENT_SPAN_ID, _SPAN_NAME = (tag(n, LEN) for n in range(1, 6))
_KIND, _START, _END, _SPAN_ATTRIBUTE = tag(6, VARINT), tag(7, I64), tag(8, I64), tag(9, LEN)
_DROPPED_ATTRIBUTES, _STATUS, _FLAGS = tag(10, VARINT), tag(15, LEN), tag(16, I32)
_STATUS_MESSAGE, _STATUS_CODE = tag(2, LEN), tag(3, VARINT)
# AnyValue's oneof: a member is written even when it holds its type's default (that is how it is told apart)
_STRING, _BOOL, _INT, _DOUBLE = tag(1, LEN), tag(2, VARINT), tag(3, VARINT), tag(4, I64)
_ARRAY, _KVLIST, _BYTES = tag(5, LEN), tag(6, LEN), tag(7, LEN)
_TRUE, _FALSE = _BOOL + b"\x01", _BOOL + b"\x00"
# SpanFlags: the context's is-remote bit is known (0x100); set (0x200) when the parent is remote
_FLAGS_LOCAL, _FLAGS_REMOTE = _FLAGS + fixed32(0x100), _FLAGS + fixed32(0x300)
_KEYS: dict[str, bytes] = {}  # attribute names, encoded: the data plane's spans use a few dozen
_KEYS_KEPT = 1024
_SMALL = ONE_BYTE_VARINTS


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of ``spans``: grouped by resource, then by instrumentation
    scope, in the order they first appear, as the SDK's ``encode_spans`` groups them."""
    if any(span.events or span.links for span in spans):
        return encode_spans(spans).SerializePartialToString()
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        by_scope = groups.setdefault(id(resource), (resource, {}))[1]
        by_scope.setdefault(id(scope), (scope, []))[1].append(delimited(_SPANS, _span(span)))
    out = []
    for resource, by_scope in groups.values():
        body = [delimited(_RESOURCE, _attributes(_ATTRIBUTE, resource.attributes))]
        for scope, encoded in by_scope.values():
            scope_spans = [delimited(_SCOPE, _scope(scope)), *encoded]
            if scope is not None and scope.schema_url:
                scope_spans.append(delimited(_SCHEMA_URL, scope.schema_url.encode()))
            body.append(delimited(_SCOPE_SPANS, b"".join(scope_spans)))
        if resource.schema_url:
            body.append(delimited(_SCHEMA_URL, resource.schema_url.encode()))
        out.append(delimited(_RESOURCE_SPANS, b"".join(body)))
    return b"".join(out)


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None  # a finished span has its context
    out = [_TRACE_ID, b"\x10", context.trace_id.to_bytes(16, "big"), _SPAN_ID, b"\x08",
           context.span_id.to_bytes(8, "big")]
    if context.trace_state:
        out.append(delimited(_TRACE_STATE, ",".join(f"{k}={v}" for k, v in context.trace_state.items()).encode()))
    parent = span.parent
    if parent is not None:
        out += (_PARENT_SPAN_ID, b"\x08", parent.span_id.to_bytes(8, "big"))
    if span.name:
        out.append(delimited(_SPAN_NAME, span.name.encode()))
    out += (_KIND, varint(span.kind.value + 1))  # the SDK's kinds from 0, OTLP's from 1 (0 is "unspecified")
    if span.start_time:
        out += (_START, fixed64(span.start_time))
    if span.end_time:
        out += (_END, fixed64(span.end_time))
    out.append(_attributes(_SPAN_ATTRIBUTE, span.attributes))
    if span.dropped_attributes:
        out += (_DROPPED_ATTRIBUTES, varint(span.dropped_attributes))
    status = span.status
    if status is not None:
        fields = b""
        if status.description:
            fields = delimited(_STATUS_MESSAGE, status.description.encode())
        if status.status_code.value:
            fields += _STATUS_CODE + varint(status.status_code.value)
        out.append(delimited(_STATUS, fields))
    out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(out)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    out = delimited(_NAME, scope.name.encode()) if scope.name else b""
    if scope.version:
        out += delimited(_VERSION, scope.version.encode())
    return out + _attributes(_SCOPE_ATTRIBUTE, scope.attributes)


def _attributes(key: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a ``KeyValue`` field behind ``key``; one the SDK could not encode either is left out,
    logged (as the SDK does). Short strings and small integers, nearly all of a span's, are written in one step."""
    if not attributes:
        return b""
    out: list[bytes] = []
    for name, value in attributes.items():
        name_field = _KEYS.get(name) or _name_field(name)
        kind = type(value)
        if kind is str:
            data = value.encode()
            size = len(name_field) + len(data) + 4  # the KeyValue: name, then value (2) holding string (1)
            if size < 0x80:
                out += (key, _SMALL[size], name_field, _KV_VALUE, _SMALL[len(data) + 2], _STRING, _SMALL[len(data)],
                        data)
                continue
        elif kind is int and 0 <= value < 0x80:
            size = len(name_field) + 4
            if size < 0x80:
                out += (key, _SMALL[size], name_field, _KV_VALUE, b"\x02", _INT, _SMALL[value])
                continue
        try:
            out.append(delimited(key, name_field + delimited(_KV_VALUE, _value(value))))
        except TypeError as exc:
            log.error("cannot encode the span attribute %s: %s", name, exc)
    return b"".join(out)


def _key_value(name: str, value: Any) -> bytes:
    return (_KEYS.get(name) or _name_field(name)) + delimited(_KV_VALUE, _value(value))


def _name_field(name: str) -> bytes:
    """A ``KeyValue``'s key field (none for ""), kept for the next span while there are few names."""
    field = delimited(_STRING_KEY, name.encode()) if name else b""
    if len(_KEYS) < _KEYS_KEPT:
        _KEYS[name] = field
    return field


def _value(value: Any) -> bytes:
    """An ``AnyValue``; the type tests in the SDK's order (a bool is an int, a str a sequence)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, str):
        return delimited(_STRING, value.encode())
    if isinstance(value, int):
        return _INT + varint(value)
    if isinstance(value, float):
        return _DOUBLE + double(value)
    if isinstance(value, bytes):
        return delimited(_BYTES, value)
    if isinstance(value, Sequence):
        return delimited(_ARRAY, b"".join(delimited(_VALUES, _value(v)) for v in value))
    if isinstance(value, Mapping):
        return delimited(_KVLIST, b"".join(delimited(_VALUES, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"an attribute value of type {type(value).__name__}")


class SpanBytesExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` (its configuration, HTTP client, retries and metrics) exporting ``encode_request``'s
    bytes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client, metrics = getattr(self, "_client", None), getattr(self, "_metrics", None)
        if self._shutdown or not hasattr(client, "export") or metrics is None:
            return super().export(spans)  # shut down (it says so), or another layout of the SDK's exporter
        # The batch processor's thread runs this while the loop serves requests: under a fine GIL switch interval
        # the loop waits for the GIL a fraction of a millisecond, not the default 5 ms (``dataplane.gil``).
        with finer_gil_switching():
            return self._export(spans, client, metrics)

    def _export(self, spans: Sequence[ReadableSpan], client: Any, metrics: Any) -> SpanExportResult:
        try:
            data = encode_request(spans)
        except Exception as exc:  # a span this encoder cannot take: the SDK's has its say
            log.warning("cannot encode %d spans directly (%s): the SDK encodes them", len(spans), exc)
            return super().export(spans)
        with metrics.export_operation(len(spans)) as result:
            limit = getattr(self, "_max_request_size", 0)
            if 0 < limit < len(data):  # as the SDK: the size before compression; 0 is no limit
                log.warning("dropping %d spans: the export request's %d bytes exceed max_request_size %d",
                            len(spans), len(data), limit)
                return SpanExportResult.FAILURE
            assert client is not None
            answer = client.export(data)
            if not answer.success:
                result.error = answer.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
