"""``gatectl plan``: what a policy change would send to the data planes, as a structural diff per region.

Pure: no I/O, no clock, no event loop. Two steps, so a replay of recorded traffic can start from the same place:

- ``propose(state, documents, regions)`` applies the documents to the current policy exactly as an apply would
  (``engine.plan_apply``: same validation, same problems) and compiles the current and the proposed policy for
  every region either mentions plus ``regions`` (those data planes run in). It returns a ``Proposal`` (both sets
  of snapshots) or the problems, as values.
- ``plan_of(proposal)`` compares the two snapshots of each region (``diff_snapshots``) as facts a data plane
  acts on (``controlplane.policy.snapshot_facts``): tenants, their residency and the candidate order of each
  route they may use, limits, budgets; keys by name; routes; deployments and their prices; providers.

A ``PolicyPlan`` is immutable; ``to_json`` is the admin API's answer (``POST /admin/v1/plan``). No secret, key
hash or hint is ever part of one: a rotated key shows as ``secret: previous → replaced``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controlplane.errors import Problem
from controlplane.policy.compile import KeyEncodings, build_snapshots
from controlplane.policy.engine import Change, Document, PolicyState, plan_apply
from controlplane.policy.snapshot_facts import (
    Facts,
    Value,
    deployment_facts,
    key_facts,
    provider_facts,
    route_facts,
    tenant_facts,
)
from tollway.pb import snapshot_pb2 as pb

ItemOp = Literal["create", "delete", "update"]
ItemKind = Literal["tenant", "key", "route", "deployment", "provider"]
KIND_ORDER: tuple[ItemKind, ...] = ("tenant", "key", "route", "deployment", "provider")


@dataclass(frozen=True)
class Proposal:
    """The current and the proposed policy, compiled for the same regions. ``changes`` are the resource changes
    an apply would make; ``generation`` the policy generation the proposal was computed against."""

    generation: int
    changes: tuple[Change, ...]
    current: Mapping[str, pb.Snapshot]
    proposed: Mapping[str, pb.Snapshot]


@dataclass(frozen=True)
class FieldChange:
    """One fact of one object: ``None`` on the side where it is absent."""

    field: str
    old: Value | None
    new: Value | None

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "old": _json_value(self.old), "new": _json_value(self.new)}


@dataclass(frozen=True)
class ItemChange:
    """An object of a region's snapshot created, deleted or changed. A created object lists its facts as
    ``FieldChange``s from ``None``, a deleted one to ``None``."""

    op: ItemOp
    kind: ItemKind
    name: str
    fields: tuple[FieldChange, ...]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "kind": self.kind, "name": self.name, "fields": [f.to_json() for f in self.fields]}


@dataclass(frozen=True)
class RegionPlan:
    """What the data planes of ``region`` would receive: the snapshot versions and the changes between them."""

    region: str
    current_version: str
    proposed_version: str
    changes: tuple[ItemChange, ...]

    @property
    def is_changed(self) -> bool:
        """The content hash differs: the data planes would install a new snapshot."""
        return self.current_version != self.proposed_version

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "changed": self.is_changed,
                "version": {"current": self.current_version, "proposed": self.proposed_version},
                "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True)
class PolicyPlan:
    """Per region, what a policy change would send to the data planes; ``resources``: the (op, kind, name) of
    every resource the apply would create or update."""

    generation: int
    resources: tuple[tuple[str, str, str], ...]
    regions: tuple[RegionPlan, ...]

    @property
    def is_changed(self) -> bool:
        return any(r.is_changed for r in self.regions)

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.generation, "changed": self.is_changed,
                "resources": [{"op": op, "kind": kind, "name": name} for op, kind, name in self.resources],
                "regions": [r.to_json() for r in self.regions]}


def _json_value(value: Value | None) -> Any:
    return list(value) if isinstance(value, tuple) else value


def propose(state: PolicyState, documents: Iterable[Document], regions: Iterable[str] = ()) -> Proposal | list[Problem]:
    """The policy after applying ``documents`` (as ``apply`` would: no pruning), compiled beside the current one
    for the union of their regions and ``regions``; or every problem an apply would report."""
    applied = plan_apply(state, documents)
    if applied.problems:
        return list(applied.problems)
    current_policy = state.policy
    proposed_policy = applied.policy if applied.policy is not None else current_policy
    wanted = set(regions) | set(current_policy.regions()) | set(proposed_policy.regions())
    keys = KeyEncodings()  # shared: a key the change leaves alone is the same object, encoded once
    current = build_snapshots(current_policy, wanted, keys)
    if not isinstance(current, dict):  # the stored policy no longer compiles: say so rather than guess
        return [Problem("", r.kind, r.name, r.field, f"the current policy does not compile: {r.message}")
                for r in current]
    proposed = current if proposed_policy is current_policy else build_snapshots(proposed_policy, wanted, keys)
    if not isinstance(proposed, dict):  # plan_apply compiled it already; kept for the types
        return [Problem("", r.kind, r.name, r.field, r.message) for r in proposed]
    return Proposal(state.generation, applied.changes, current, proposed)


def plan_of(proposal: Proposal) -> PolicyPlan:
    resources = tuple((c.op, c.kind, c.name) for c in proposal.changes if c.op != "unchanged")
    return PolicyPlan(proposal.generation, resources, diff_snapshots(proposal.current, proposal.proposed))


def diff_snapshots(current: Mapping[str, pb.Snapshot], proposed: Mapping[str, pb.Snapshot]) -> tuple[RegionPlan, ...]:
    """One ``RegionPlan`` per region of either side (a missing side counts as an empty snapshot), by name."""
    empty = pb.Snapshot()
    return tuple(diff_region(region, current.get(region, empty), proposed.get(region, empty))
                 for region in sorted(set(current) | set(proposed)))


def diff_region(region: str, old: pb.Snapshot, new: pb.Snapshot) -> RegionPlan:
    if old.version and old.version == new.version:
        return RegionPlan(region, old.version, new.version, ())
    changes: list[ItemChange] = []
    changes += _diff_items("tenant", tenant_facts(old), tenant_facts(new))
    changes += _diff_keys(old, new)
    changes += _diff_messages("route", old.routes, new.routes, route_facts)
    changes += _diff_messages("deployment", old.deployments, new.deployments, deployment_facts)
    changes += _diff_messages("provider", old.providers, new.providers, provider_facts)
    return RegionPlan(region, old.version, new.version, tuple(changes))


def diff_facts(old: Facts, new: Facts) -> tuple[FieldChange, ...]:
    """The facts that differ, in ``old``'s order, then those only ``new`` has."""
    changed = [FieldChange(k, v, new.get(k)) for k, v in old.items() if new.get(k) != v]
    return tuple(changed + [FieldChange(k, None, v) for k, v in new.items() if k not in old])


def _diff_items(kind: ItemKind, old: Mapping[str, Facts], new: Mapping[str, Facts]) -> list[ItemChange]:
    out: list[ItemChange] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is None and after is not None:
            out.append(ItemChange("create", kind, name, diff_facts({}, after)))
        elif after is None and before is not None:
            out.append(ItemChange("delete", kind, name, tuple(FieldChange(k, v, None) for k, v in before.items())))
        elif before is not None and after is not None:
            fields = diff_facts(before, after)
            if fields:
                out.append(ItemChange("update", kind, name, fields))
    return out


def _diff_messages(kind: ItemKind, old: Iterable[Any], new: Iterable[Any],
                   facts: Callable[[Any], Facts]) -> list[ItemChange]:
    """Objects with a ``name``: only those whose message differs are turned into facts."""
    before, after = {m.name: m for m in old}, {m.name: m for m in new}
    differ = [n for n in before.keys() | after.keys() if before.get(n) != after.get(n)]
    return _diff_items(kind, {n: facts(before[n]) for n in differ if n in before},
                       {n: facts(after[n]) for n in differ if n in after})


def _retired(snap: pb.Snapshot) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in snap.retired_secrets:
        out.setdefault(r.key_id, []).append(r.expires_at)
    return out


_ABSENT = (-1, b"")  # a key's bytes are never empty: it has an id


def _key_bytes(snap: pb.Snapshot) -> dict[str, tuple[int, bytes]]:
    """Key id → (position, the key's bytes): one pass, no message kept per key (100,000 wrappers would cost
    more than the comparison)."""
    return {k.id: (i, k.SerializeToString(deterministic=True)) for i, k in enumerate(snap.keys)}


def _diff_keys(old: pb.Snapshot, new: pb.Snapshot) -> list[ItemChange]:
    """Keys by name. A policy holds up to 100,000 of them: keys whose bytes are equal are skipped without
    building facts, and hashes are compared here, never shown."""
    before, after = _key_bytes(old), _key_bytes(new)
    retired_before, retired_after = _retired(old), _retired(new)
    out: list[ItemChange] = []
    for name in sorted(n for n in before.keys() | after.keys()
                       if before.get(n, _ABSENT)[1] != after.get(n, _ABSENT)[1]
                       or n in retired_before or n in retired_after):
        b, a = before.get(name), after.get(name)
        rb, ra = sorted(retired_before.get(name, ())), sorted(retired_after.get(name, ()))
        if b is None and a is not None:
            out.append(ItemChange("create", "key", name, diff_facts({}, key_facts(new.keys[a[0]], ra))))
        elif a is None and b is not None:
            out.append(ItemChange("delete", "key", name,
                                  tuple(FieldChange(k, v, None) for k, v in key_facts(old.keys[b[0]], rb).items())))
        elif a is not None and b is not None:
            old_key, new_key = old.keys[b[0]], new.keys[a[0]]
            fields = diff_facts(key_facts(old_key, rb), key_facts(new_key, ra))
            if old_key.hash != new_key.hash:
                fields = (*fields, FieldChange("secret", "previous", "replaced"))
            if fields:
                out.append(ItemChange("update", "key", name, fields))
    return out
