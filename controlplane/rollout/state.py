"""The rollout record as the store keeps it, and the user's inputs (canary selector, abort rule, durations).

Pure: no I/O, no clock (times are passed in, unix seconds). A ``Rollout`` is immutable; the manager replaces it
whole in the store (``/tollway/rollout/current``) in the same transaction as the policy generation it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from controlplane.errors import InvalidRequest

Outcome = Literal["promoted", "aborted"]

_DURATION = re.compile(r"^(\d+)(s|m|h)?$")
_RULE = re.compile(r"^error-rate\s*>\s*(\d+(?:\.\d+)?)\s*%$")
_UNITS = {"s": 1, "m": 60, "h": 3600, None: 1}


@dataclass(frozen=True)
class Canary:
    """Who gets the new generation first: whole regions, or single data planes (by node id)."""

    regions: tuple[str, ...] = ()
    dataplanes: tuple[str, ...] = ()

    def includes(self, region: str, node_id: str) -> bool:
        return region in self.regions or node_id in self.dataplanes

    def describe(self) -> str:
        parts = [f"region {r}" for r in self.regions] + [f"data plane {d}" for d in self.dataplanes]
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"regions": list(self.regions), "dataplanes": list(self.dataplanes)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Canary:
        return cls(tuple(body.get("regions") or ()), tuple(body.get("dataplanes") or ()))


def parse_canary(text: str) -> Canary:
    """``eu``, ``eu,us``, ``region=eu`` or ``dataplane=NAME`` (comma-separated, mixed). ``InvalidRequest`` if empty."""
    regions: list[str] = []
    dataplanes: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, name = part.partition("=")
        if not sep:
            kind, name = "region", part
        if kind not in ("region", "dataplane") or not name:
            raise InvalidRequest(f"'canary': {part!r} is not REGION, region=REGION or dataplane=NAME")
        (regions if kind == "region" else dataplanes).append(name)
    if not regions and not dataplanes:
        raise InvalidRequest("'canary' names no region and no data plane")
    return Canary(tuple(regions), tuple(dataplanes))


def parse_duration(text: str) -> int:
    """``600``, ``90s``, ``10m``, ``2h`` to seconds; ``InvalidRequest`` otherwise."""
    found = _DURATION.match(text.strip())
    if found is None or int(found.group(1)) <= 0:
        raise InvalidRequest(f"'promoteAfter': {text[:40]!r} is not a duration such as 90s, 10m or 2h")
    return int(found.group(1)) * _UNITS[found.group(2)]


def parse_abort_rule(text: str) -> float:
    """``error-rate>2%`` to the threshold as a fraction (0.02); ``InvalidRequest`` otherwise."""
    found = _RULE.match(text.strip())
    if found is None:
        raise InvalidRequest(f"'abortIf': {text[:40]!r} is not a rule such as error-rate>2%")
    threshold = float(found.group(1)) / 100
    if threshold >= 1:
        raise InvalidRequest("'abortIf': the error-rate threshold must be below 100%")
    return threshold


@dataclass(frozen=True)
class Event:
    """One step of a rollout: when, what, who (``control-plane`` for automatic decisions), why, and which
    versions each region's canary and other data planes were given."""

    time: str
    action: str  # started | promoted | aborted
    who: str
    reason: str = ""
    versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "action": self.action, "who": self.who, "reason": self.reason,
                "versions": {r: dict(v) for r, v in self.versions.items()}}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Event:
        return cls(str(body["time"]), str(body["action"]), str(body["who"]), str(body.get("reason") or ""),
                   dict(body.get("versions") or {}))


@dataclass(frozen=True)
class Rollout:
    """An active rollout: generation ``target`` runs on the canary, ``base`` (with current keys) elsewhere.

    ``promote_at`` (unix seconds) and ``abort_above`` (error-rate threshold, a fraction) are the automatic
    decision's inputs; None: a human decides (a NACK from a canary data plane aborts in any case).
    ``started_at`` (unix seconds) bounds the error-rate window: traffic from before the canary ran the new
    generation is not the canary's.
    """

    id: str
    who: str
    started: str
    base: int
    target: int
    canary: Canary
    promote_at: float | None = None
    abort_above: float | None = None
    events: tuple[Event, ...] = ()
    started_at: float = 0.0

    def with_event(self, event: Event) -> Rollout:
        return replace(self, events=(*self.events, event))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "who": self.who, "started": self.started, "baseRevision": self.base,
                "targetRevision": self.target, "canary": self.canary.to_json(), "promoteAt": self.promote_at,
                "abortIfErrorRateAbove": self.abort_above, "events": [e.to_json() for e in self.events],
                "startedAt": self.started_at}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Rollout:
        return cls(str(body["id"]), str(body["who"]), str(body["started"]), int(body["baseRevision"]),
                   int(body["targetRevision"]), Canary.from_json(body["canary"]),
                   body.get("promoteAt"), body.get("abortIfErrorRateAbove"),
                   tuple(Event.from_json(e) for e in body.get("events") or ()), float(body.get("startedAt") or 0.0))

    def summary(self) -> dict[str, Any]:
        """What a history entry and the audit chain keep of the rollout."""
        return {"id": self.id, "canary": self.canary.to_json(), "baseRevision": self.base,
                "targetRevision": self.target}
