"""The OTLP export's bytes (``dataplane.record.otlp_export``) are the message the SDK's own encoder builds: the
same spans through ``encode_request`` and through ``encode_spans`` parse to equal ``ExportTraceServiceRequest``s,
for every kind of span and attribute value the data plane or an operator's resource can give. (The end-to-end
export to a real receiver is ``test_tracing.py``'s.)"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from dataplane.record.otlp_export import encode_request
from dataplane.record.tracing import SCOPE

pytestmark = pytest.mark.pure

RESOURCE = Resource({"service.name": "tollway-dataplane", "tollway.region": "eu", "tollway.node.id": "edge-w0"},
                    "https://opentelemetry.io/schemas/1.37.0")
OTHER = Resource({"service.name": "another", "deployment.environment": "prod", "replicas": 3})
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "tollway.tenant": "acme",
    "tollway.attempts": 1, "tollway.cost.pico_usd": 123_456_789_012, "tollway.aborted": False,
    "tollway.cached": True, "tollway.time_to_first_byte_s": 0.0123, "tollway.zero": 0, "tollway.zero_s": 0.0,
    "tollway.negative": -7, "gen_ai.response.finish_reasons": ("stop", "length"), "tollway.empty": (),
    "tollway.ints": [1, 2, 300], "tollway.flags": [True, False], "tollway.raw": b"\x00\xff",
    "gen_ai.input.messages": "[{\"role\": \"user\", \"content\": \"héllo ✓\"}]", "tollway.blank": "",
    "tollway.big": 2**63 - 1,
}


def span(name: str = "chat gpt-4o-mini", *, trace_id: int = 0x0123456789ABCDEF0123456789ABCDEF,
         span_id: int = 0x1122334455667788, parent: SpanContext | None = None, state: TraceState | None = None,
         kind: SpanKind = SpanKind.SERVER, status: Status | None = None, attributes: dict[str, Any] | None = None,
         resource: Resource = RESOURCE, scope: InstrumentationScope | None = SCOPE,
         start: int = 1_764_000_000_000_000_000, **extra: Any) -> ReadableSpan:
    return ReadableSpan(name, SpanContext(trace_id, span_id, False, SAMPLED, state), parent, resource,
                        ATTRIBUTES if attributes is None else attributes, kind=kind,
                        status=status or Status(StatusCode.UNSET), start_time=start, end_time=start + 12_345_678,
                        instrumentation_scope=scope, **extra)


def assert_same_message(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    assert ours.SerializeToString() == encode_spans(spans).SerializeToString()


def test_a_request_span_and_its_attempt_spans() -> None:
    client = SpanContext(0x0123456789ABCDEF0123456789ABCDEF, 0x1122334455667788, False, SAMPLED)
    assert_same_message([
        span(),
        span("chat gpt-4o-mini-2024", span_id=0x99, parent=client, kind=SpanKind.CLIENT,
             status=Status(StatusCode.ERROR, "upstream answered 529: overloaded"),
             attributes={"tollway.attempt": 1, "error.type": "overloaded", "http.response.status_code": 529}),
        span("chat gpt-4o-mini-2024", span_id=0x9A, parent=client, kind=SpanKind.CLIENT,
             attributes={"tollway.attempt": 2}),
    ])


def test_a_span_under_a_clients_remote_parent_with_its_tracestate() -> None:
    remote = SpanContext(0xABC, 0xDEF, True, SAMPLED)
    assert_same_message([span(trace_id=0xABC, parent=remote, state=TraceState([("vendor", "v1"), ("other", "x")]),
                              status=Status(StatusCode.ERROR))])


def test_refusals_and_every_kind_and_status() -> None:
    assert_same_message([span(f"op {kind.name}", span_id=i + 1, kind=kind, status=Status(code), attributes={})
                         for i, (kind, code) in enumerate(zip(list(SpanKind) * 3, list(StatusCode) * 5, strict=False))])


def test_spans_grouped_by_resource_then_scope_in_order_of_appearance() -> None:
    other_scope = InstrumentationScope("tollway.other", None, None)
    assert_same_message([span(span_id=1), span(span_id=2, resource=OTHER), span(span_id=3, scope=other_scope),
                         span(span_id=4, scope=None), span(span_id=5, resource=OTHER), span(span_id=6)])


def test_nested_values_and_a_span_with_no_name_or_times() -> None:
    assert_same_message([span("", start=0, attributes={"tollway.map": {"a": 1, "b": ["x", 2.5]}, "": "unnamed"})])


def test_spans_with_events_or_links_are_the_sdks_own_encoding() -> None:
    linked = SpanContext(0x77, 0x78, True, SAMPLED)
    assert_same_message([span(span_id=1),
                         span(span_id=2, events=[Event("retry", {"attempt": 2}, timestamp=1_764_000_000_000_000_100)]),
                         span(span_id=3, links=[Link(linked, {"why": "follows"})])])


def test_a_value_no_encoder_takes_is_left_out_as_the_sdk_leaves_it() -> None:
    odd = span(attributes={"tollway.ok": "yes", "tollway.odd": object()})
    ours = ExportTraceServiceRequest.FromString(encode_request([odd]))
    assert ours == encode_spans([odd])
    assert [kv.key for kv in ours.resource_spans[0].scope_spans[0].spans[0].attributes] == ["tollway.ok"]
