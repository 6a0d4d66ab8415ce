"""The sampling decision ``Tracer.begin`` takes itself for a request without a parent under ``--trace-sampling``
is the one the SDK's ``parentbased_traceidratio`` sampler takes: same requests sampled, same trace ids."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from dataplane.record.tracing import Tracer

pytestmark = pytest.mark.pure


class Discard:
    def on_end(self, span: ReadableSpan) -> None:
        pass


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_the_root_decision_is_the_sdk_samplers(ratio: float) -> None:
    root = TraceIdRatioBased(ratio)
    ours = Tracer(Discard(), ParentBased(root), Resource({}), root)  # type: ignore[arg-type]
    sdk = Tracer(Discard(), ParentBased(TraceIdRatioBased(ratio)), Resource({}))  # type: ignore[arg-type]
    sampled = 0
    for seed in range(2_000):
        random.seed(seed)
        mine = ours.begin({})
        random.seed(seed)
        theirs = sdk.begin({})
        assert (mine is None) == (theirs is None)
        if mine is not None and theirs is not None:
            assert (mine.trace_id, mine.span_id, mine.sampled, mine.parent) == \
                (theirs.trace_id, theirs.span_id, theirs.sampled, theirs.parent)
            sampled += 1
    assert abs(sampled / 2_000 - ratio) < 0.03  # and it samples at the ratio


def test_a_client_parent_is_still_the_sdk_samplers_to_judge() -> None:
    root = TraceIdRatioBased(0.0)
    tracer = Tracer(Discard(), ParentBased(root), Resource({}), root)  # type: ignore[arg-type]
    sampled = tracer.begin({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert sampled is not None and sampled.sampled  # a sampled parent: recorded, whatever the ratio
    unsampled = tracer.begin({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"})
    assert unsampled is not None and not unsampled.sampled  # forwarded, not recorded
