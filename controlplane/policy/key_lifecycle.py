"""A key's life after creation: rotation, revocation, and what a rollback may do to keys. Pure: no I/O, no clock
(the caller passes ``now``, unix seconds).

- **Rotation** gives a key a new secret and keeps the old one in ``previousSecrets`` with its own expiry (the
  overlap). The compiler ships it in the snapshot, so every data plane refuses it at that time on its own, even
  one cut off from the control plane.
- **Revocation** sets ``revokedAt`` and drops every secret; the compiler leaves the key out of snapshots.
- **Apply** of a key's document (a saved ``gatectl get -o yaml``, say) may change what policy says of the key,
  not bring a secret back: it cannot lift a revocation, make a rotated-out secret current again, nor add or
  lengthen a previous secret's overlap (``applied_key_problems``; what the current key records, so a secret
  rotated out with no overlap, which it no longer lists, is not caught: only history knows it).
- **Rollback** keeps keys as they are unless asked to include them, and even then never brings back a secret a
  later generation revoked or rotated out: ``retired_secrets`` reads them from the history being undone, and
  ``split_rollback`` keeps such a key as it is now (reported as kept, with the reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the engine checks applied keys with ``applied_key_problems``: no import at run time
    from controlplane.policy.engine import PolicyState, ResourceId

KEY_KIND = "ApiKey"
KeptReason = Literal["keys-excluded", "secret-retired"]


@dataclass(frozen=True)
class KeptKey:
    """A key a rollback would have changed (``op``) but left as it is, and why."""

    name: str
    op: Literal["create", "update", "delete"]
    reason: KeptReason

    def to_json(self) -> dict[str, Any]:
        return {"kind": KEY_KIND, "name": self.name, "op": self.op, "reason": self.reason}


@dataclass(frozen=True)
class RetiredSecrets:
    """Secret hashes (``sha256:<hex>``) that must not come back: ``dead`` ones never again (revoked), ``rotated``
    ones never again as a key's current secret (they may stay a previous secret with the expiry they had)."""

    dead: frozenset[str] = frozenset()
    rotated: frozenset[str] = frozenset()


def _spec(version: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = version.get("spec") if version is not None else None
    return spec if isinstance(spec, Mapping) else {}


def _previous(spec: Mapping[str, Any]) -> list[str]:
    return [str(p.get("hash")) for p in spec.get("previousSecrets") or () if isinstance(p, Mapping)]


def is_revoked(version: Mapping[str, Any] | None) -> bool:
    return _spec(version).get("revokedAt") is not None


def rotated(current: Mapping[str, Any], new_hash: str, hint: str, now: int, overlap_seconds: int) -> dict[str, Any]:
    """``current`` (a key's canonical JSON) with a new secret; the old one accepted for ``overlap_seconds`` more
    (never past the key's own expiry; 0: refused at once). Previous secrets whose overlap has ended are dropped."""
    spec = dict(_spec(current))
    kept = [p for p in spec.get("previousSecrets") or () if int(p.get("expiresAt") or 0) > now]
    ends = now + overlap_seconds
    if spec.get("expiresAt"):
        ends = min(ends, int(spec["expiresAt"]))
    if ends > now:
        kept.append({"hash": spec["hash"], "expiresAt": ends})
    spec.update(hash=new_hash, hint=hint)
    if kept:
        spec["previousSecrets"] = kept
    else:
        spec.pop("previousSecrets", None)
    return {**current, "spec": spec}


def revoked(current: Mapping[str, Any], now: int) -> dict[str, Any]:
    """``current`` revoked at ``now``: no secret of it is accepted any more."""
    spec = {k: v for k, v in _spec(current).items() if k != "previousSecrets"}
    spec["revokedAt"] = now
    return {**current, "spec": spec}


def applied_key_problems(name: str, current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with applying ``wanted`` over the key's ``current`` canonical JSON: ``(field, message)``
    pairs, none for a change of what policy says of the key (tenant, routes, budget, limits, expiry...), a
    rotation (a new secret, the current one kept for an overlap) or a revocation."""
    if is_revoked(current):
        if not is_revoked(wanted):
            return [("spec.revokedAt", f"ApiKey {name!r} is revoked and stays revoked (a document cannot bring it "
                                       "back; create a new key with `gatectl keys create`)")]
        return []
    if is_revoked(wanted):
        return []
    now, then = _spec(current), _spec(wanted)
    previous = {str(p.get("hash")): int(p.get("expiresAt") or 0) for p in now.get("previousSecrets") or ()
                if isinstance(p, Mapping)}
    problems: list[tuple[str, str]] = []
    if str(then.get("hash")) in previous:
        problems.append(("spec.hash", f"the secret was rotated out of ApiKey {name!r} and cannot become its "
                                      "secret again (`gatectl keys rotate` makes a new one)"))
    for i, p in enumerate(then.get("previousSecrets") or ()):
        if not isinstance(p, Mapping):
            continue
        hash_, ends = str(p.get("hash")), int(p.get("expiresAt") or 0)
        if hash_ == str(now.get("hash")):
            continue  # rotated by hand: the current secret kept for an overlap
        if hash_ not in previous:
            problems.append((f"spec.previousSecrets[{i}].hash", f"not a secret ApiKey {name!r} has: a previous "
                                                                "secret can only be one the key had"))
        elif ends > previous[hash_]:
            problems.append((f"spec.previousSecrets[{i}].expiresAt", f"lengthens the overlap of a rotated-out "
                                                                     f"secret of ApiKey {name!r} (it ends at "
                                                                     f"{previous[hash_]})"))
    return problems


def retired_secrets(entries: Sequence[Mapping[str, Any]], state: PolicyState) -> RetiredSecrets:
    """What the generations after a rollback's target revoked or rotated out (``entries``: their history), and
    what the current keys say was."""
    versions: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
    for entry in entries:
        versions.extend((c.get("before"), c.get("after")) for c in entry.get("changes") or ()
                        if c.get("kind") == KEY_KIND)
    versions.extend((None, s.canonical) for (kind, _), s in state.resources.items() if kind == KEY_KIND)
    dead: set[str] = set()
    rotated_out: set[str] = set()
    for before, after in versions:
        for version in (before, after):
            rotated_out.update(_previous(_spec(version)))
            if is_revoked(version):
                dead.add(str(_spec(version).get("hash")))
        if is_revoked(after) and not is_revoked(before):  # the revocation itself: every secret it killed
            dead.update([str(_spec(before).get("hash")), *_previous(_spec(before))])
    return RetiredSecrets(frozenset(dead), frozenset(rotated_out))


def _brings_back(wanted: Mapping[str, Any], retired: RetiredSecrets) -> bool:
    if is_revoked(wanted):
        return False  # a revoked version accepts nothing
    spec = _spec(wanted)
    current = str(spec.get("hash"))
    return current in retired.dead or current in retired.rotated or any(
        h in retired.dead for h in _previous(spec))


def split_rollback(
    state: PolicyState, target: Mapping[ResourceId, dict[str, Any] | None], retired: RetiredSecrets,
    include_keys: bool,
) -> tuple[dict[ResourceId, dict[str, Any] | None], list[KeptKey]]:
    """The rollback ``target`` without the key changes it may not make, and those keys (name order)."""
    out: dict[ResourceId, dict[str, Any] | None] = {}
    kept: list[KeptKey] = []
    for rid, wanted in sorted(target.items()):
        kind, name = rid
        if kind != KEY_KIND:
            out[rid] = wanted
            continue
        current = state.resources.get(rid)
        if wanted is None:
            if current is None:
                continue
            op: Literal["create", "update", "delete"] = "delete"
        elif current is None:
            op = "create"
        elif current.matches(wanted):
            continue
        else:
            op = "update"
        if not include_keys:
            kept.append(KeptKey(name, op, "keys-excluded"))
        elif wanted is not None and _brings_back(wanted, retired):
            kept.append(KeptKey(name, op, "secret-retired"))
        else:
            out[rid] = wanted
    return out, kept
