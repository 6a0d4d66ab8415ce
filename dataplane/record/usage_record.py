"""The usage record of one request that reached an upstream (``usage_fields``: identifiers, tokens, cost,
latencies, and the decision facts the core read), and the record of one refused by policy (``refusal_record``).

Built from the request's ``Outcome`` (the same facts the request log and metrics read); never holds prompt or
response content. ``dataplane.record.records.Records`` appends it to the local spool, which the shipper sends on.
"""

from __future__ import annotations

from typing import Any, Protocol

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


def usage_fields(outcome: Outcome, region: str, node_id: str) -> dict[str, Any]:
    """The fields of ``outcome``'s usage record that are set, by name (the record is ``UsageRecord(**fields)``):
    identifiers, tokens, cost, latencies, never prompt or response content; a field left out has its default (0,
    empty, false). Only the set fields: half the cost of naming all 33, most being 0 or empty on most requests.
    The request log reads the same dict, where reading the record's fields would cost a lookup and a new object
    each."""
    plan = outcome.plan
    request = plan.request
    usage = outcome.usage
    dep = outcome.deployment
    who = outcome.attribution
    fields: dict[str, Any] = {
        "request_id": outcome.request_id, "timestamp_ms": int(outcome.started * 1000),
        "tenant": plan.key.tenant.name, "project": (who.project if who is not None else "") or plan.key.project,
        "key_id": plan.key.id, "route": plan.route.name, "region": region, "snapshot_version": outcome.snapshot,
        "cost_micros": micros_rounded(outcome.cost_pico), "cost_pico": outcome.cost_pico,
        "latency_ms": int(outcome.duration_s * 1000),
        "upstream_ms": int((outcome.upstream_s if outcome.upstream_s is not None else outcome.duration_s) * 1000),
        "status": outcome.status, "attempts": outcome.attempts, "node_id": node_id, "surface": request.surface,
        "estimated_prompt_tokens": request.estimated_prompt_tokens, "max_tokens": request.max_tokens,
    }
    if dep is not None:
        fields["deployment"], fields["provider"] = dep.name, dep.provider.name
    if usage is not None:
        fields["input_tokens"], fields["output_tokens"] = usage.prompt_tokens, usage.completion_tokens
        if usage.cached_tokens:
            fields["cached_input_tokens"] = usage.cached_tokens
        if usage.cache_write_tokens or usage.cache_write_1h_tokens:
            fields["cache_write_tokens"] = usage.cache_write_tokens
            fields["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
        if usage.reasoning_tokens:
            fields["reasoning_tokens"] = usage.reasoning_tokens
        if usage.is_estimated:
            fields["usage_source"] = usage.source
    if outcome.first_byte_s is not None:
        fields["ttfb_ms"] = int(outcome.first_byte_s * 1000)
    if outcome.status >= 400 or outcome.aborted:
        fields["error_type"] = _error_type(outcome.status, outcome.aborted)
    if request.stream:
        fields["stream"] = True
    if who is not None:
        if who.user:
            fields["user"] = who.user
        if who.tags:
            fields["tags"] = who.tags
    if request.needs:
        fields["needs"] = request.needs
    return fields


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
