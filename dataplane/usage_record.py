"""The ``record`` step of the request path: one usage record per request that reached an upstream.

``RecordingGate`` wraps the budget/rate-limit gate: it admits as the inner gate does and, on ``settle``,
settles the inner gate and appends the request's ``UsageRecord`` to the local spool (one ``os.write``, no
fsync, never blocking on the control plane). The shipper sends spooled records to the control plane.
"""

from __future__ import annotations

from typing import Protocol

from dataplane.accounting import Gate, Outcome
from dataplane.errors import ApiError
from dataplane.request import Plan
from tollway.pb import usage_pb2


class Spool(Protocol):
    def append(self, record: usage_pb2.UsageRecord) -> None: ...


def _error_type(status: int, aborted: bool) -> str:
    if aborted:
        return "stream_aborted"
    if status < 400:
        return ""
    if status == 504:
        return "upstream_timeout"
    if status >= 500:
        return "upstream_error"
    return "upstream_refused"


def usage_record(outcome: Outcome, region: str, node_id: str) -> usage_pb2.UsageRecord:
    """The record of ``outcome``: identifiers, tokens, cost, latencies; never prompt or response content."""
    plan = outcome.plan
    usage = outcome.usage
    dep = outcome.deployment
    user = plan.request.payload.get("user")
    first_byte_ms = int(outcome.first_byte_s * 1000) if outcome.first_byte_s is not None else 0
    return usage_pb2.UsageRecord(
        request_id=outcome.request_id,
        timestamp_ms=int(outcome.started * 1000),
        tenant=plan.key.tenant.name,
        project=plan.key.project,
        user=user if isinstance(user, str) else "",
        key_id=plan.key.id,
        route=plan.route.name,
        deployment=dep.name if dep is not None else "",
        provider=dep.provider.name if dep is not None else "",
        region=region,
        snapshot_version=outcome.snapshot,
        input_tokens=usage.prompt_tokens if usage else 0,
        cached_input_tokens=usage.cached_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        cost_micros=outcome.cost_micros,
        latency_ms=int(outcome.duration_s * 1000),
        ttfb_ms=first_byte_ms,
        upstream_ms=int(outcome.duration_s * 1000),
        status=outcome.status,
        error_type=_error_type(outcome.status, outcome.aborted),
        attempts=outcome.attempts,
        stream=plan.request.stream,
        node_id=node_id,
    )


class RecordingGate:
    """A ``Gate`` that also records usage. Task-safe on one event loop."""

    def __init__(self, inner: Gate, spool: Spool, region: str, node_id: str) -> None:
        self._inner = inner
        self._spool = spool
        self._region = region
        self._node_id = node_id

    def admit(self, plan: Plan, now: float) -> ApiError | None:
        return self._inner.admit(plan, now)

    def settle(self, outcome: Outcome) -> None:
        self._inner.settle(outcome)
        self._spool.append(usage_record(outcome, self._region, self._node_id))
