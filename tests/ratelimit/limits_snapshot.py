"""The data plane test snapshot (tests/dataplane/snapshots.py) with rate limits, and plans built from it."""

from __future__ import annotations

from typing import Any

import orjson

from dataplane.core.decide import RequestFacts, RoutePlan, decide
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Runtime
from tests.dataplane.snapshots import Keys, build_snapshot
from tollway.pb import snapshot_pb2 as pb


def limited_snapshot(tenant: pb.RateLimit | None = None, per_user: pb.RateLimit | None = None,
                     key: pb.RateLimit | None = None, eu_url: str = "http://127.0.0.1:9/v1",
                     version: str = "v-limits-1") -> tuple[pb.Snapshot, Keys]:
    """Limits on tenant ``acme``, each of its users, and its key ``acme-all``; ``acme`` also gets project
    ``mobile`` (so ``acme-all``, bound to ``web``, has a project it may not use)."""
    snap, keys = build_snapshot(eu_url)
    snap.version = version
    acme = next(t for t in snap.tenants if t.name == "acme")
    acme.projects.append("mobile")
    if tenant is not None:
        acme.rate_limit.CopyFrom(tenant)
    if per_user is not None:
        acme.per_user_rate_limit.CopyFrom(per_user)
    if key is not None:
        next(k for k in snap.keys if k.id == "acme-all").rate_limit.CopyFrom(key)
    return snap, keys


def plan_for(runtime: Runtime, key: str, now: float = 1_000.0, **body: Any) -> RoutePlan:
    payload = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **body}
    plan = decide(RequestFacts(runtime, f"Bearer {key}", orjson.dumps(payload), now))
    assert not isinstance(plan, ApiError), plan
    return plan
