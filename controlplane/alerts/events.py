"""An alert event as stored, and its deliveries: one JSON document per event, ``/tollway/alerts/events/{id}``.

The event's facts never change after it is recorded, so every delivery attempt POSTs the same bytes
(``AlertEvent.body``), whatever the attempt and whichever process makes it. Deliveries name the webhook only: its
URL and secret are looked up in the current policy and environment at each attempt, so neither is ever stored
here (a URL may itself be a credential).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from controlplane.policy.resources import ALERT_KINDS, AlertKind

ALERT_EVENTS = "/tollway/alerts/events/"
DeliveryState = Literal["pending", "delivered", "failed"]
EventState = Literal["pending", "delivered", "failed", "none"]


def alert_key(event_id: str) -> str:
    return f"{ALERT_EVENTS}{event_id}"


@dataclass(slots=True)
class Delivery:
    """One webhook's delivery of one event. Mutable: the duty updates it after each attempt."""

    webhook: str
    state: DeliveryState = "pending"
    attempts: int = 0
    next_at: float = 0.0       # unix seconds of the next attempt (pending only)
    last_error: str = ""       # status or failure of the last attempt, never a secret or URL
    delivered_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"webhook": self.webhook, "state": self.state, "attempts": self.attempts, "nextAt": self.next_at,
                "lastError": self.last_error, "deliveredAt": self.delivered_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Delivery:
        state = d.get("state")
        return cls(str(d["webhook"]), state if state in ("pending", "delivered", "failed") else "pending",
                   int(d.get("attempts", 0)), float(d.get("nextAt", 0.0)), str(d.get("lastError", "")),
                   float(d.get("deliveredAt", 0.0)))


@dataclass(slots=True)
class AlertEvent:
    id: str
    kind: AlertKind
    time: float                # unix seconds when it was recorded
    tenant: str
    project: str
    scope: str                 # budget scope (tenant/T, project/T/P, key/K, user/T/U) or rate-limit scope
    period: str                # YYYY-MM for budget events, "" for rate-limit ones
    details: dict[str, Any] = field(default_factory=dict)  # amounts as USD strings, durations, counts
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def state(self) -> EventState:
        """failed when a delivery gave up, else pending while one is, delivered when all are; none: no webhook."""
        states = {d.state for d in self.deliveries}
        if not states:
            return "none"
        if "failed" in states:
            return "failed"
        return "pending" if "pending" in states else "delivered"

    @property
    def attempts(self) -> int:
        return sum(d.attempts for d in self.deliveries)

    def body(self) -> bytes:
        """What a webhook receives: the event's facts, identical at every attempt."""
        return orjson.dumps({"id": self.id, "kind": self.kind, "time": self.time, "tenant": self.tenant,
                             "project": self.project, "scope": self.scope, "period": self.period,
                             "details": self.details}, option=orjson.OPT_SORT_KEYS)

    def to_json(self) -> bytes:
        return orjson.dumps({"id": self.id, "kind": self.kind, "time": self.time, "tenant": self.tenant,
                             "project": self.project, "scope": self.scope, "period": self.period,
                             "details": self.details, "deliveries": [d.to_json() for d in self.deliveries]},
                            option=orjson.OPT_SORT_KEYS)

    def to_api(self) -> dict[str, Any]:
        """The admin API's view (``GET /admin/v1/alerts``)."""
        return {"id": self.id, "time": self.time, "kind": self.kind, "tenant": self.tenant, "project": self.project,
                "scope": self.scope, "period": self.period, "state": self.state, "attempts": self.attempts,
                "details": self.details,
                "deliveries": [{"webhook": d.webhook, "state": d.state, "attempts": d.attempts,
                                "lastError": d.last_error, "deliveredAt": d.delivered_at or None}
                               for d in self.deliveries]}

    @classmethod
    def from_json(cls, raw: bytes) -> AlertEvent:
        """Raises ``ValueError`` (orjson's decode error is one) for a document that is not an event."""
        d = orjson.loads(raw)
        kind = d.get("kind") if isinstance(d, dict) else None
        if kind not in ALERT_KINDS:
            raise ValueError("not an alert event")
        return cls(str(d["id"]), kind, float(d["time"]), str(d.get("tenant", "")), str(d.get("project", "")),
                   str(d.get("scope", "")), str(d.get("period", "")), dict(d.get("details") or {}),
                   [Delivery.from_json(x) for x in d.get("deliveries") or []])
