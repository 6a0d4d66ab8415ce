"""The data plane's health, as it travels to the control plane on the discovery stream.

The same view that ``GET /healthz/deployments`` and ``/metrics`` show (``Health.view`` over the deployments a
tenant may use here), as ``DeploymentHealth`` messages: names, states, numbers and the reason of an unhealthy
state, never a credential or a URL. Pure apart from reading the holder's current runtime once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dataplane.core.health import Health, usable_deployments
from dataplane.snapshot.holder import SnapshotHolder
from tollway.pb import discovery_pb2 as dpb

HealthSummary = Callable[[], list[dpb.DeploymentHealth]]


def health_summary(holder: SnapshotHolder, health: Health, now: float | None = None) -> list[dpb.DeploymentHealth]:
    """Every usable deployment's health now (``now`` in monotonic seconds); empty before the first snapshot."""
    runtime = holder.runtime
    if runtime is None:
        return []
    views = health.view(usable_deployments(runtime), time.monotonic() if now is None else now)
    return [
        dpb.DeploymentHealth(
            deployment=v.deployment, provider=v.provider, state=v.state, consecutive_failures=v.consecutive_failures,
            ejections=v.ejections, ejected_for_s=round(v.ejected_for_s, 3), ttfb_ms=round(v.ttfb_ewma_s * 1000, 3),
            reason=v.reason, since_unix_s=v.since_unix_s,
        )
        for v in views
    ]


def summary_of(holder: SnapshotHolder, health: Health) -> HealthSummary:
    """A ``HealthSummary`` bound to one data plane's holder and health, for the discovery client."""
    return lambda: health_summary(holder, health)
