"""Usage, cost, what a request is charged for, and the ``Outcome`` of an admitted request. Pure.

Money is integers: prices are micro-dollars per million tokens, costs micro-dollars, rounded up so the gateway
never under-counts. The charging rules for answers without usage live here together: ``charged_complete`` for
a non-streamed answer, ``charged_stream`` for a stream cut before its usage chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.snapshot.runtime import Deployment, Prices


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def usage_of(obj: Any) -> Usage | None:
    """The ``usage`` of an OpenAI answer, if it carries one: a chat completion or chunk, an embeddings or legacy
    completions answer (``prompt_tokens``/``completion_tokens``), or a Responses API object or event (``input_tokens``
    /``output_tokens``, at the top or under ``response``, as ``response.completed`` carries it)."""
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if not isinstance(u, dict):
        inner = obj.get("response")
        u = inner.get("usage") if isinstance(inner, dict) else None
        if not isinstance(u, dict):
            return None
    if "input_tokens" in u or "output_tokens" in u:
        details = u.get("input_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        return Usage(_count(u.get("input_tokens")), _count(u.get("output_tokens")), _count(cached))
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(_count(u.get("prompt_tokens")), _count(u.get("completion_tokens")), _count(cached))


def cost_micros(prices: Prices, usage: Usage) -> int:
    """Integer micro-dollars, rounded up. Cached prompt tokens are billed at the cached-input price."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    scaled = ((usage.prompt_tokens - cached) * prices.input + cached * prices.cached_input
              + usage.completion_tokens * prices.output)
    return -(-scaled // 1_000_000)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one admitted request, for settlement and usage records."""

    request_id: str
    snapshot: str
    plan: RoutePlan
    deployment: Deployment | None  # the last one attempted
    attempts: int
    status: int
    usage: Usage | None
    cost_micros: int
    started: float  # unix seconds
    first_byte_s: float | None
    duration_s: float
    aborted: bool = False  # the stream ended early (client gone or upstream died)
    attribution: Attribution | None = None  # user, project and tags the request was attributed to
    upstream_s: float | None = None  # first upstream send to the end of the upstream body (None: not measured)


def charged_complete(answer: Any, body_len: int, estimated_prompt_tokens: int) -> Usage:
    """What a non-streamed answer (``answer``: its parsed JSON, None if it was not JSON) is charged for: the
    reported usage or, when an OpenAI-compatible server omits it, an estimate, never nothing: the prompt estimate,
    and the body's length bounding the output tokens from above."""
    return usage_of(answer) or Usage(estimated_prompt_tokens, -(-body_len // 4))


def charged_stream(usage: Usage | None, chunks: int, estimated_prompt_tokens: int) -> Usage | None:
    """What a stream is charged for: the upstream's reported usage or, for a stream cut before its usage chunk
    (the client left, the upstream died), an estimate of what was produced: the prompt estimate and one output
    token per content chunk (OpenAI-compatible servers stream about a token per chunk; the first chunk only
    carries the role). A stream that produced nothing costs nothing."""
    if usage is not None or chunks == 0:
        return usage
    return Usage(prompt_tokens=estimated_prompt_tokens, completion_tokens=max(chunks - 1, 0))
