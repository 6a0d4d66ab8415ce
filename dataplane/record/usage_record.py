"""The usage record of one request that reached an upstream (identifiers, tokens, cost, latencies, and the
decision facts the core read), and the record of one refused by policy (``refusal_record``).

Built from the request's ``Outcome`` (the same facts the request log and metrics read); never holds prompt or
response content. ``dataplane.record.records.Records`` appends it to the local spool, which the shipper sends on.
"""

from __future__ import annotations

from typing import Protocol

from dataplane.core.accounting import Outcome
from dataplane.core.attribution import Attribution
from dataplane.core.validate import HubRequest
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Key
from tollway.money import micros_rounded
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
    request = plan.request
    usage = outcome.usage
    dep = outcome.deployment
    who = outcome.attribution
    first_byte_ms = int(outcome.first_byte_s * 1000) if outcome.first_byte_s is not None else 0
    return usage_pb2.UsageRecord(
        request_id=outcome.request_id,
        timestamp_ms=int(outcome.started * 1000),
        tenant=plan.key.tenant.name,
        project=(who.project if who is not None else "") or plan.key.project,
        user=who.user if who is not None else "",
        key_id=plan.key.id,
        route=plan.route.name,
        deployment=dep.name if dep is not None else "",
        provider=dep.provider.name if dep is not None else "",
        region=region,
        snapshot_version=outcome.snapshot,
        input_tokens=usage.prompt_tokens if usage else 0,
        cached_input_tokens=usage.cached_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        cost_micros=micros_rounded(outcome.cost_pico), cost_pico=outcome.cost_pico,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
        cache_write_1h_tokens=usage.cache_write_1h_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        usage_source="" if outcome.usage is None or not outcome.usage.is_estimated else outcome.usage.source,
        latency_ms=int(outcome.duration_s * 1000),
        ttfb_ms=first_byte_ms,
        upstream_ms=int((outcome.upstream_s if outcome.upstream_s is not None else outcome.duration_s) * 1000),
        status=outcome.status,
        error_type=_error_type(outcome.status, outcome.aborted),
        attempts=outcome.attempts,
        stream=plan.request.stream,
        node_id=node_id,
        tags=who.tags if who is not None else (),
        surface=request.surface,
        needs=request.needs,
        estimated_prompt_tokens=request.estimated_prompt_tokens,
        max_tokens=request.max_tokens,
    )


def refusal_record(error: ApiError, request_id: str, started: float, snapshot: str, key: Key,
                   request: HubRequest, region: str, node_id: str,
                   attribution: Attribution | None = None) -> usage_pb2.UsageRecord:
    """The record of a request refused by policy before any upstream: who asked what, and why it was refused
    (``refusal``: the error's code); no deployment, no tokens, no cost."""
    return usage_pb2.UsageRecord(
        request_id=request_id,
        timestamp_ms=int(started * 1000),
        tenant=key.tenant.name,
        project=(attribution.project if attribution is not None else "") or key.project,
        user=attribution.user if attribution is not None else "",
        key_id=key.id,
        route=request.model,
        region=region,
        snapshot_version=snapshot,
        status=error.status,
        error_type=error.type,
        refusal=error.code or error.type,
        stream=request.stream,
        node_id=node_id,
        surface=request.surface,
        needs=request.needs,
        estimated_prompt_tokens=request.estimated_prompt_tokens,
        max_tokens=request.max_tokens,
    )
