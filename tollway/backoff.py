"""Reconnect delays shared by every long-lived client (store watch, discovery, usage, leases)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential delays: ``initial * 2**n``, capped at ``maximum``, each scaled by [0.5, 1)."""

    initial: float = 0.1
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * 2 ** min(attempt, 30)) * random.uniform(0.5, 1.0))


def url_host(host: str) -> str:
    """``host`` as it stands in a URL or ``host:port`` target (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host
