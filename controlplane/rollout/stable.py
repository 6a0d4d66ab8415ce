"""The policy the data planes outside the canary run during a rollout. Pure.

It is the rollout's base generation, except that every key carries its *current* secrets: a revocation or
rotation made during the rollout (the only writes a rollout lets through) reaches the canary, which runs the
newest generation, and everyone else, which runs this. Keys the rollout itself created are left out (the base
did not have them); keys it deleted stay out as well.
"""

from __future__ import annotations

from controlplane.policy.compile import PolicySet
from controlplane.policy.resources import ApiKey

_SECRET_STATE = ("hash", "hint", "previous_secrets", "revoked_at")


def stable_policy(base: PolicySet, current: PolicySet) -> PolicySet:
    """``base`` with each key's secret state (hash, hint, previous secrets, revocation) taken from ``current``."""
    keys: dict[str, ApiKey] = {}
    for name, old in base.keys.items():
        now = current.keys.get(name)
        if now is None:
            continue
        if all(getattr(old.spec, f) == getattr(now.spec, f) for f in _SECRET_STATE):
            keys[name] = old
            continue
        spec = old.spec.model_copy(update={f: getattr(now.spec, f) for f in _SECRET_STATE})
        keys[name] = old.model_copy(update={"spec": spec})
    groups = base.by_kind()
    groups["ApiKey"] = keys
    return PolicySet.from_groups(groups)
