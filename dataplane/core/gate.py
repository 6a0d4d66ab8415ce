"""The ``admit``/``settle`` seam where rate limits and budgets plug into the request path.

``Gate`` is the interface of the budget/rate-limit layer: ``admit`` runs after planning and before the first
upstream attempt (pure over local counters, no waiting on the control plane) and answers an ``Admission`` or a
``Refusal`` (values, not exceptions); ``settle`` runs once per request that reached an upstream, with the real
usage; ``release`` gives back what a request that never reached one took. ``OpenGate`` admits everything;
``dataplane.core.limits.limits_gate.LimitsGate`` is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from dataplane.core.accounting import Outcome
from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.core.limits.ratelimit import Ticket
from dataplane.errors import ApiError


@dataclass(unsafe_hash=True)
class Admission:
    """A request let through: headers to add to its response, and what ``settle``/``release`` need. Immutable."""

    attribution: Final[Attribution]
    headers: Final[Mapping[str, str]]
    ticket: Final[Ticket]
    reservation: Final[Any]  # the budget book's, None without a budget book

    def __init__(self, attribution: Attribution, headers: Mapping[str, str], ticket: Ticket,
                 reservation: Any = None) -> None:
        self.attribution = attribution
        self.headers = headers
        self.ticket = ticket
        self.reservation = reservation


NO_TICKET = Ticket((), 0, None, None)  # what a gate without rate limits admits with

@dataclass(unsafe_hash=True)
class Refusal:
    """A request refused before forwarding: the error to answer and headers to send with it."""

    error: Final[ApiError]
    headers: Final[Mapping[str, str]]

    def __init__(self, error: ApiError, headers: Mapping[str, str]) -> None:
        self.error = error
        self.headers = headers


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
