"""Usage, cost, and the ``admit``/``settle`` seam where budgets and rate limits plug in.

Money is integers: prices are micro-dollars per million tokens, costs micro-dollars, rounded up so the gateway
never under-counts. ``Gate`` is the interface of the budget/rate-limit layer: ``admit`` runs after planning and
before the first upstream attempt (pure over local counters, no waiting on the control plane), ``settle`` runs
once per request that reached an upstream, with the real usage. ``OpenGate`` admits everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.core.limits_gate import NO_TICKET, Admission, Refusal
from dataplane.snapshot.runtime import Deployment, Prices


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def usage_of(obj: Any) -> Usage | None:
    """The ``usage`` object of an OpenAI chat completion (or chunk), if it carries one."""
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if not isinstance(u, dict):
        return None
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0

    def count(v: Any) -> int:
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    return Usage(count(u.get("prompt_tokens")), count(u.get("completion_tokens")), count(cached))


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


class Gate(Protocol):
    def admit(self, plan: RoutePlan, attribution: Attribution, now: float) -> Admission | Refusal:
        """Let the request through (with headers for its response), or refuse it (error and headers)."""
        ...

    def settle(self, outcome: Outcome, admission: Admission) -> None:
        """Account for an admitted request that reached an upstream. Must not block: no I/O on the request path."""
        ...

    def release(self, admission: Admission, now: float) -> None:
        """Give back what an admitted request took when it never reached an upstream."""
        ...


class OpenGate:
    """Admits every request and keeps no accounts (tests, and data planes built without limits)."""

    def admit(self, plan: RoutePlan, attribution: Attribution, now: float) -> Admission | Refusal:
        return Admission(attribution, {}, NO_TICKET)

    def settle(self, outcome: Outcome, admission: Admission) -> None:
        return None

    def release(self, admission: Admission, now: float) -> None:
        return None
