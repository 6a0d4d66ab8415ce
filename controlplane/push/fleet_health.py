"""Deployment health across the fleet, as the data planes report it on their discovery streams. Pure.

Each data plane judges its upstreams itself (passive outlier detection and active probes, ``dataplane.core.health``)
and sends what it sees with every discovery request. The control plane keeps the latest report per data plane
(``DeploymentState`` tuples on its registry record) and answers two questions from them:

- per data plane, how its deployments are (``health_json``: the ``health`` of ``GET /admin/v1/dataplanes``);
- per provider and deployment, how the fleet sees it (``providers_summary``: ``GET /admin/v1/providers``),
  with the worst state among the connected data planes. A disconnected data plane's last report is still shown
  (marked ``connected: false``) but no longer counts: it is not current.

States, from best to worst: ``healthy``, ``trial`` (half-open: the next attempt is a trial), ``ejected``
(back-off after consecutive failures), ``provider-down`` (the active check cannot reach the provider),
``no-credential`` (the data plane lacks the provider's credential: never routed to there); ``unknown`` when no
connected data plane reports the deployment. Every unhealthy state comes with the data plane's ``reason`` (the
last error, the check's finding, the credential source that failed) and ``since`` (unix seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tollway.pb import discovery_pb2 as dpb

SEVERITY: dict[str, int] = {"healthy": 0, "trial": 1, "ejected": 2, "provider-down": 3, "no-credential": 4}
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One deployment as one data plane last reported it. Immutable."""

    deployment: str
    provider: str
    state: str
    consecutive_failures: int
    ejections: int
    ejected_for_s: float
    ttfb_ms: float
    reason: str = ""
    since: float = 0.0  # unix seconds the state began (the data plane's clock); 0 when healthy


class Reporter(Protocol):
    """What the summary needs of a data plane's record (``controlplane.push.discovery.DataPlaneRecord``)."""

    @property
    def node_id(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def health(self) -> tuple[DeploymentState, ...]: ...


def states_of(request: dpb.DiscoveryRequest) -> tuple[DeploymentState, ...]:
    """The health a discovery request carries, in the control plane's form."""
    return tuple(
        DeploymentState(h.deployment, h.provider, h.state, h.consecutive_failures, h.ejections,
                        round(h.ejected_for_s, 3), round(h.ttfb_ms, 3), h.reason, round(h.since_unix_s, 3))
        for h in request.health
    )


def _state_json(s: DeploymentState) -> dict[str, Any]:
    return {"state": s.state, "consecutiveFailures": s.consecutive_failures, "ejections": s.ejections,
            "ejectedForS": s.ejected_for_s, "ttfbMs": s.ttfb_ms, "reason": s.reason, "since": s.since}


def health_json(states: Sequence[DeploymentState]) -> list[dict[str, Any]]:
    return [{"deployment": s.deployment, "provider": s.provider, **_state_json(s)}
            for s in sorted(states, key=lambda s: (s.provider, s.deployment))]


def worst(states: Iterable[str]) -> str:
    """The worst of ``states``; an unrecognised word counts as ``ejected`` (unwell, cause unknown)."""
    found = list(states)
    return max(found, key=lambda s: SEVERITY.get(s, SEVERITY["ejected"])) if found else UNKNOWN


def providers_summary(records: Iterable[Reporter]) -> list[dict[str, Any]]:
    """One item per (provider, deployment) some data plane reported, sorted; each with its data planes' view."""
    seen: dict[tuple[str, str], list[tuple[Reporter, DeploymentState]]] = {}
    for record in records:
        for s in record.health:
            seen.setdefault((s.provider, s.deployment), []).append((record, s))
    out = []
    for (provider, deployment), reports in sorted(seen.items()):
        reports.sort(key=lambda rs: (rs[0].region, rs[0].node_id))
        out.append({
            "provider": provider,
            "deployment": deployment,
            "state": worst(s.state for r, s in reports if r.connected),
            "dataplanes": [{"nodeId": r.node_id, "region": r.region, "connected": r.connected, **_state_json(s)}
                           for r, s in reports],
        })
    return out
