"""Keys reach the snapshot through hand-encoded, memoised wire entries: the result must be exactly the snapshot
that building each ``ApiKey`` message with protobuf gives, on a cold compile and after changes with a warm memo."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.policy.compile import KeyEncodings, PolicySet, budget_pb, compile_region, rate_limit_pb
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure


def docs(*keys: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        provider("p", "eu"), model("m", "p"), route("chat", "m"), route("other", "m"),
        tenant("t", "eu", projects=("web", "app")), tenant("u", "us"),
        *keys,
    ]


VARIED = [
    api_key("plain", "t", "01" * 32),
    api_key("full", "t", "02" * 32, project="web", routes=["other", "chat"], expiresAt=2**40 + 5,
            budget={"monthlyUsd": "12.5", "softPercent": 90, "safeAllowanceUsd": "0.25"},
            rateLimits={"requestsPerMinute": 600, "tokensPerMinute": 100_000}),
    # A hint long enough (> 127 bytes of UTF-8) that its length takes two varint bytes.
    {**api_key("long-hint", "t", "03" * 32), "spec": {**api_key("x", "t", "03" * 32)["spec"], "hint": "é" * 100}},
    api_key("empty-limits", "t", "04" * 32, rateLimits={}),
    api_key("elsewhere", "u", "05" * 32),  # tenant not in eu: not in the eu snapshot
]


def by_protobuf(policy: PolicySet, region: str) -> list[pb.ApiKey]:
    """The keys as the compiler built them before it encoded by hand: one message per key."""
    tenants = {t.name for t in policy.tenants.values() if region in t.spec.regions}
    out = []
    for name in sorted(policy.keys):
        k = policy.keys[name]
        s = k.spec
        if s.tenant in tenants:
            out.append(pb.ApiKey(
                id=k.name, hash=bytes.fromhex(s.hash.removeprefix("sha256:")), tenant=s.tenant,
                project=s.project or "", routes=sorted(s.routes), hint=s.hint, expires_at=s.expires_at or 0,
                budget=budget_pb(s.budget), rate_limit=rate_limit_pb(s.rate_limits)))
    return out


def test_hand_encoded_keys_equal_protobuf_built_ones() -> None:
    policy = policy_of(*docs(*VARIED))
    snap = compile_region(policy, "eu")
    assert list(snap.keys) == by_protobuf(policy, "eu")
    assert [k.id for k in snap.keys] == ["empty-limits", "full", "long-hint", "plain"]
    full = snap.keys[1]
    assert (full.expires_at, list(full.routes), full.budget.monthly_micros, full.rate_limit.tokens_per_minute) == (
        2**40 + 5, ["chat", "other"], 12_500_000, 100_000)


def test_a_warm_memo_gives_the_cold_snapshot_after_updates_and_deletes() -> None:
    memo = KeyEncodings()
    first = policy_of(*docs(*VARIED))
    assert compile_region(first, "eu", memo) == compile_region(first, "eu")
    reused = memo.entry(first.keys["plain"])
    assert memo.entry(first.keys["plain"]) is reused  # the same resource object: encoded once

    changed = docs(*VARIED[1:], api_key("plain", "t", "0f" * 32, project="app"))
    changed = [d for d in changed if d["metadata"]["name"] != "long-hint"]
    second = policy_of(*changed)
    warm = compile_region(second, "eu", memo)
    assert warm == compile_region(second, "eu") and warm.version != compile_region(first, "eu").version
    assert {k.id: k.project for k in warm.keys}["plain"] == "app"
    assert "long-hint" not in {k.id for k in warm.keys}

    assert len(memo) == 5
    memo.retain(second.keys.keys())
    assert len(memo) == 4  # the deleted long-hint is forgotten
