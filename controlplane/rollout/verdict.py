"""The automatic decision on a rollout, from what the control plane observes. Pure (``now`` is passed in).

Order: a NACK from any canary data plane aborts, whatever the configuration; then, with an error-rate rule, a
canary whose error rate exceeds the others' by more than the threshold aborts (judged only once the canary has
served ``min_requests`` in the window, so three requests cannot decide); then, with a deadline, the rollout is
promoted once it has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from controlplane.rollout.state import Rollout


@dataclass(frozen=True)
class Traffic:
    """Requests of one side (canary or the others) in the window: how many, how many failed (5xx, gateway
    errors), and their median latency in milliseconds (None: no request)."""

    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CanaryNode:
    """A canary data plane as the registry sees it."""

    node_id: str
    status: str  # ACK | NACK | PENDING
    error: str


@dataclass(frozen=True)
class Verdict:
    action: Literal["promote", "abort"]
    reason: str


def judge(rollout: Rollout, nodes: Sequence[CanaryNode], canary: Traffic, others: Traffic, now: float,
          min_requests: int) -> Verdict | None:
    """What to do with ``rollout`` now, or None to keep waiting."""
    for node in nodes:
        if node.status == "NACK":
            return Verdict("abort", f"data plane {node.node_id} rejected the snapshot: {node.error}")
    if rollout.abort_above is not None and canary.requests >= min_requests:
        added = canary.error_rate - others.error_rate
        if added > rollout.abort_above:
            return Verdict("abort", f"canary error rate {canary.error_rate:.1%} ({canary.errors}/{canary.requests}) "
                                    f"exceeds the others' {others.error_rate:.1%} by more than "
                                    f"{rollout.abort_above:.1%}")
    if rollout.promote_at is not None and now >= rollout.promote_at:
        return Verdict("promote", "the canary period ended without an abort condition")
    return None
