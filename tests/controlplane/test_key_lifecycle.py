"""Rotation, revocation and what a rollback may do to keys: the pure rules, and how they compile. No event loop."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.policy import key_lifecycle
from controlplane.policy.compile import PolicySet, compile_region
from controlplane.policy.engine import Document, PolicyState, Stored, plan_apply
from controlplane.policy.key_lifecycle import KeptKey, RetiredSecrets
from controlplane.policy.resources import dump_resource, parse_resource
from tests.core.policy_docs import api_key, model, provider, route, tenant

pytestmark = pytest.mark.pure

A, B, C = "aa" * 32, "bb" * 32, "cc" * 32
NOW = 1_000_000


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    return dump_resource(parse_resource(doc))


def state_of(*docs: dict[str, Any]) -> PolicyState:
    stored = [Stored.of(parse_resource(d)) for d in docs]
    return PolicyState(3, 30, {(s.resource.kind, s.resource.name): s for s in stored})


def test_rotation_keeps_the_old_secret_for_the_overlap_only() -> None:
    key = canonical(api_key("k", "t", A))
    once = key_lifecycle.rotated(key, f"sha256:{B}", "tw_...bbbb", NOW, 3600)
    assert once["spec"]["hash"] == f"sha256:{B}" and once["spec"]["hint"] == "tw_...bbbb"
    assert once["spec"]["previousSecrets"] == [{"hash": f"sha256:{A}", "expiresAt": NOW + 3600}]
    twice = key_lifecycle.rotated(once, f"sha256:{C}", "tw_...cccc", NOW + 10, 60)  # A's overlap still runs
    assert [p["hash"] for p in twice["spec"]["previousSecrets"]] == [f"sha256:{A}", f"sha256:{B}"]
    later = key_lifecycle.rotated(twice, f"sha256:{A.replace('a', 'd')}", "h", NOW + 7200, 0)
    assert "previousSecrets" not in later["spec"]  # A's and B's overlaps are over, C is cut at once
    capped = key_lifecycle.rotated(canonical(api_key("k", "t", A, expiresAt=NOW + 5)), f"sha256:{B}", "h", NOW, 60)
    assert capped["spec"]["previousSecrets"][0]["expiresAt"] == NOW + 5  # never past the key's own expiry
    parse_resource(twice)  # still a valid document


def test_revocation_drops_every_secret() -> None:
    rotated = key_lifecycle.rotated(canonical(api_key("k", "t", A)), f"sha256:{B}", "h", NOW, 60)
    revoked = key_lifecycle.revoked(rotated, NOW)
    assert revoked["spec"]["revokedAt"] == NOW and "previousSecrets" not in revoked["spec"]
    assert key_lifecycle.is_revoked(revoked) and not key_lifecycle.is_revoked(rotated)


def test_compiled_snapshot_leaves_out_revoked_keys_and_carries_retired_secrets() -> None:
    base = [provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu")]
    rotated = key_lifecycle.rotated(canonical(api_key("k", "t", A)), f"sha256:{B}", "h", NOW, 60)
    revoked = key_lifecycle.revoked(canonical(api_key("gone", "t", C)), NOW)
    snap = compile_region(PolicySet.of(parse_resource(d) for d in [*base, rotated, revoked]), "eu")
    assert [(k.id, k.hash.hex()) for k in snap.keys] == [("k", B)]
    assert [(r.key_id, r.hash.hex(), r.expires_at) for r in snap.retired_secrets] == [("k", A, NOW + 60)]


def entry(*changes: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> dict[str, Any]:
    return {"changes": [{"op": "update", "kind": "ApiKey", "name": "k", "before": b, "after": a}
                        for b, a in changes]}


KEY_A = canonical(api_key("k", "t", A))
KEY_B = key_lifecycle.rotated(KEY_A, f"sha256:{B}", "h", NOW, 60)
KEY_REVOKED = key_lifecycle.revoked(KEY_B, NOW + 1)
KEY_A_ROUTES = canonical(api_key("k", "t", A, routes=["r"]))


@pytest.mark.parametrize(("now", "history", "wanted", "include", "expected"), [
    # keys are kept unless asked
    (KEY_B, [entry((KEY_A, KEY_B))], KEY_A, False, [KeptKey("k", "update", "keys-excluded")]),
    (KEY_A, [], None, False, [KeptKey("k", "delete", "keys-excluded")]),
    # asked: a rotated-out secret never becomes current again
    (KEY_B, [entry((KEY_A, KEY_B))], KEY_A, True, [KeptKey("k", "update", "secret-retired")]),
    # asked: a revoked key's secrets never come back, whether it still exists or was deleted since
    (KEY_REVOKED, [entry((KEY_B, KEY_REVOKED))], KEY_B, True, [KeptKey("k", "update", "secret-retired")]),
    (None, [entry((KEY_B, KEY_REVOKED)), entry((KEY_REVOKED, None))], KEY_B, True,
     [KeptKey("k", "create", "secret-retired")]),
    # asked, and harmless: deleting a key created since, or going back to an unrelated older version
    (KEY_A, [entry((None, KEY_A))], None, True, []),
    (KEY_A_ROUTES, [entry((KEY_A, KEY_A_ROUTES))], KEY_A, True, []),
], ids=["kept-update", "kept-delete", "rotated-out", "revoked", "revoked-then-deleted", "delete", "older-routes"])
def test_rollback_keeps_keys_it_may_not_change(
    now: dict[str, Any] | None, history: list[dict[str, Any]], wanted: dict[str, Any] | None, include: bool,
    expected: list[KeptKey],
) -> None:
    base = [provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu")]
    state = state_of(*base, *([now] if now is not None else []))
    retired = key_lifecycle.retired_secrets(history, state)
    target, kept = key_lifecycle.split_rollback(
        state, {("ApiKey", "k"): wanted, ("Route", "r"): None}, retired, include)
    assert kept == expected
    assert (("ApiKey", "k") in target) == (not expected)
    assert target[("Route", "r")] is None  # other kinds are untouched by the key rules


def test_retired_secrets_of_a_revocation_include_its_overlapping_ones() -> None:
    retired = key_lifecycle.retired_secrets([entry((KEY_B, KEY_REVOKED))], state_of())
    assert retired == RetiredSecrets(dead=frozenset({f"sha256:{B}", f"sha256:{A}"}),
                                     rotated=frozenset({f"sha256:{A}"}))


def _applied(current: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The problems of applying ``wanted`` (a document from ``keys.yaml``) over the key ``current``."""
    base = [tenant("t", "eu"), tenant("u", "eu")]
    plan = plan_apply(state_of(*base, current), [Document("keys.yaml#1", wanted)])
    return [(p.source, p.field, p.message) for p in plan.problems]


def test_apply_cannot_bring_a_revoked_or_rotated_out_secret_back() -> None:
    saved = canonical(api_key("k", "t", A))  # what `gatectl get apikey k -o yaml` printed before
    rotated = key_lifecycle.rotated(saved, f"sha256:{B}", "h", NOW, 3600)
    revoked = key_lifecycle.revoked(rotated, NOW + 10)
    # The saved document over the revoked key: the revocation stays.
    [(source, field, message)] = _applied(revoked, saved)
    assert (source, field) == ("keys.yaml#1", "spec.revokedAt") and "stays revoked" in message
    # The saved document over the rotated key: A was rotated out, it does not become the secret again.
    assert [f for _, f, _ in _applied(rotated, saved)] == ["spec.hash"]
    # Lengthening A's overlap, or listing a secret the key never had as a previous one, is refused too.
    longer = {**rotated, "spec": {**rotated["spec"], "previousSecrets": [{"hash": f"sha256:{A}",
                                                                            "expiresAt": NOW + 7200}]}}
    assert [f for _, f, _ in _applied(rotated, longer)] == ["spec.previousSecrets[0].expiresAt"]
    foreign = {**rotated, "spec": {**rotated["spec"], "previousSecrets": [{"hash": f"sha256:{C}",
                                                                             "expiresAt": NOW + 60}]}}
    assert [f for _, f, _ in _applied(rotated, foreign)] == ["spec.previousSecrets[0].hash"]


def test_apply_still_changes_what_policy_says_of_a_key_and_may_rotate_or_revoke_it() -> None:
    rotated = key_lifecycle.rotated(canonical(api_key("k", "t", A)), f"sha256:{B}", "h", NOW, 3600)
    moved = {**rotated, "spec": {**rotated["spec"], "tenant": "u", "expiresAt": NOW + 86_400}}
    assert _applied(rotated, moved) == []
    shorter = {**rotated, "spec": {**rotated["spec"], "previousSecrets": [{"hash": f"sha256:{A}",
                                                                             "expiresAt": NOW + 60}]}}
    assert _applied(rotated, shorter) == []  # cutting an overlap short is allowed
    assert _applied(rotated, key_lifecycle.rotated(rotated, f"sha256:{C}", "h", NOW + 5, 60)) == []
    assert _applied(rotated, key_lifecycle.revoked(rotated, NOW + 5)) == []
    revoked = key_lifecycle.revoked(rotated, NOW + 5)
    assert _applied(revoked, {**revoked, "spec": {**revoked["spec"], "tenant": "u"}}) == []
