"""Policy planning: what an apply, delete or rollback would change, and whether the result is a valid policy.

Pure: no I/O, no clock, no event loop. The repository reads a ``PolicyState`` from the store, asks this module
for a ``Plan``, and writes the plan's changes in one transaction. ``apply --dry-run``, ``diff`` and real applies
all go through the same functions, so what a dry run reports is what an apply does.

Speed matters at scale (100,000 keys): a document equal to what is stored (or to a document that validated to
it before) is recognised as unchanged by a dict comparison, without running pydantic again; only new and
changed documents are validated and serialized.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from controlplane.errors import Problem
from controlplane.policy import key_lifecycle
from controlplane.policy.compile import AnyResource, PolicySet, build_snapshots
from controlplane.policy.resources import KINDS, Kind, dump_resource, parse_resource

ResourceId = tuple[str, str]  # (kind, name)
Op = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True)
class Stored:
    """One resource as the store holds it: the parsed model and its canonical JSON (``dump_resource``).

    ``source`` is a document already known to validate to exactly this resource (validation is deterministic),
    so applying the same file again skips pydantic. Python dict equality treats ``1 == 1.0 == True``; pydantic's
    lax mode maps those to the same canonical value, so a match never hides a change.
    """

    resource: AnyResource
    canonical: dict[str, Any]
    value: bytes  # the bytes the store holds (orjson of ``canonical``); equal bytes mean an equal resource
    source: dict[str, Any] | None = None

    def matches(self, document: object) -> bool:
        return document == self.source or document == self.canonical

    def learned(self, document: dict[str, Any]) -> Stored:
        return Stored(self.resource, self.canonical, self.value, document)

    @classmethod
    def of(cls, resource: AnyResource, source: dict[str, Any] | None = None) -> Stored:
        canonical = dump_resource(resource)
        return cls(resource, canonical, orjson.dumps(canonical), source)

    @classmethod
    def decode(cls, value: bytes) -> Stored:
        """A resource as read from the store (validated: the store is not trusted to hold valid JSON)."""
        canonical = orjson.loads(value)
        return cls(parse_resource(canonical), canonical, value)


@dataclass(frozen=True)
class PolicyState:
    """The whole policy at one generation. Immutable; ``lock_revision`` is the store ``mod_revision`` of the
    generation key it was read at (0 when no policy was ever written), the guard of the next write."""

    generation: int = 0
    lock_revision: int = 0
    resources: Mapping[ResourceId, Stored] = field(default_factory=dict)

    @cached_property
    def policy(self) -> PolicySet:
        return PolicySet.of(s.resource for s in self.resources.values())

    def items(self, kind: str, name: str | None = None) -> list[Stored]:
        if name is not None:
            found = self.resources.get((kind, name))
            return [found] if found is not None else []
        return [s for (k, n), s in sorted(self.resources.items()) if k == kind]


@dataclass(frozen=True)
class Document:
    """A document as submitted: ``source`` names it for error messages (``policies/a.yaml#2``)."""

    source: str
    body: object


@dataclass(frozen=True)
class Change:
    """What happens to one resource. ``before``/``after`` are canonical JSON (``None``: absent)."""

    op: Op
    kind: str
    name: str
    source: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    stored: Stored | None = None  # the new value for create/update; the current one (maybe learned) otherwise

    @property
    def id(self) -> ResourceId:
        return (self.kind, self.name)

    def diff(self) -> str:
        return diff_text(self.kind, self.name, self.before, self.after) if self.op != "unchanged" else ""

    def summary(self) -> dict[str, Any]:
        return {"op": self.op, "kind": self.kind, "name": self.name}


@dataclass(frozen=True)
class ApplyPlan:
    """The changes computed against ``base``; empty ``problems`` means the result is a valid policy."""

    base: PolicyState
    changes: tuple[Change, ...] = ()
    problems: tuple[Problem, ...] = ()
    policy: PolicySet | None = None  # the policy after the changes, when it was checked

    @property
    def writes(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.op != "unchanged")

    @property
    def is_noop(self) -> bool:
        return not self.writes


def problems_of(source: str, kind: str, name: str, error: ValidationError) -> list[Problem]:
    """One problem per pydantic error, with a field path like ``spec.pricing.inputPerMillion``."""
    out = []
    for e in error.errors():
        loc = list(e["loc"])
        if loc and loc[0] == "resource":
            loc = loc[1:]
        if loc and loc[0] == kind:  # the discriminated union puts the tag in the path
            loc = loc[1:]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["kind"]
        out.append(Problem(source, kind, name, _path(loc), e["msg"]))
    return out


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _identity(body: object) -> tuple[str, str]:
    """Best-effort kind and name of a raw document, for naming it in problems before it validates."""
    if not isinstance(body, dict):
        return "", ""
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    kind = body.get("kind")
    return (kind if isinstance(kind, str) else ""), (name if isinstance(name, str) else "")


def plan_apply(state: PolicyState, documents: Iterable[Document]) -> ApplyPlan:
    """Create or update every document's resource; resources not mentioned stay (no pruning)."""
    changes: list[Change] = []
    problems: list[Problem] = []
    seen: dict[ResourceId, str] = {}
    for doc in documents:
        kind, name = _identity(doc.body)
        if not isinstance(doc.body, dict):
            problems.append(Problem(doc.source, kind, name, "", "a document must be a mapping"))
            continue
        rid = (kind, name)
        if rid in seen and kind in KINDS:
            problems.append(Problem(doc.source, kind, name, "metadata.name",
                                    f"{kind} {name!r} appears more than once (first in {seen[rid]})"))
            continue
        current = state.resources.get(rid)
        if current is not None and current.matches(doc.body):
            seen[rid] = doc.source
            changes.append(Change("unchanged", kind, name, doc.source, current.canonical, current.canonical,
                                  current))
            continue
        try:
            resource = parse_resource(doc.body)
        except ValidationError as e:
            problems.extend(problems_of(doc.source, kind, name, e))
            continue
        seen[rid] = doc.source
        new = Stored.of(resource, doc.body)
        if current is None:
            changes.append(Change("create", kind, name, doc.source, None, new.canonical, new))
        elif new.canonical == current.canonical:
            changes.append(Change("unchanged", kind, name, doc.source, current.canonical, current.canonical,
                                  current.learned(doc.body)))
        else:
            if kind == key_lifecycle.KEY_KIND:
                problems.extend(Problem(doc.source, kind, name, field, message) for field, message
                                in key_lifecycle.applied_key_problems(name, current.canonical, new.canonical))
            changes.append(Change("update", kind, name, doc.source, current.canonical, new.canonical, new))
    if problems:
        return ApplyPlan(state, tuple(changes), tuple(problems))
    return _checked(state, changes)


def plan_delete(state: PolicyState, kind: str, name: str) -> ApplyPlan:
    """Remove one resource; refused (problems) when anything left still refers to it. It must exist."""
    current = state.resources[(kind, name)]
    return _checked(state, [Change("delete", kind, name, "", current.canonical, None)])


def plan_restore(state: PolicyState, target: Mapping[ResourceId, dict[str, Any] | None], source: str) -> ApplyPlan:
    """Make each resource in ``target`` equal to its canonical JSON there (``None``: absent). For rollback."""
    changes: list[Change] = []
    problems: list[Problem] = []
    for (kind, name), wanted in sorted(target.items()):
        current = state.resources.get((kind, name))
        if wanted is None:
            if current is not None:
                changes.append(Change("delete", kind, name, source, current.canonical, None))
            continue
        if current is not None and current.matches(wanted):
            continue
        try:
            new = Stored.of(parse_resource(wanted))
        except ValidationError as e:
            problems.extend(problems_of(source, kind, name, e))
            continue
        op: Op = "create" if current is None else "update"
        changes.append(Change(op, kind, name, source, current.canonical if current else None, new.canonical, new))
    if problems:
        return ApplyPlan(state, tuple(changes), tuple(problems))
    return _checked(state, changes)


def undo(entries: Sequence[Mapping[str, Any]]) -> dict[ResourceId, dict[str, Any] | None]:
    """The policy before ``entries`` (history entries, newest first, ending just after the target generation),
    as the canonical JSON each touched resource must get back (``None``: must not exist)."""
    target: dict[ResourceId, dict[str, Any] | None] = {}
    for entry in entries:  # newest first: the oldest entry's ``before`` wins
        for change in entry["changes"]:
            target[(change["kind"], change["name"])] = change["before"]
    return target


def merged(state: PolicyState, changes: Iterable[Change]) -> dict[ResourceId, Stored]:
    """The resources after ``changes``; unchanged ones keep their (possibly learned) ``Stored``."""
    out = dict(state.resources)
    for c in changes:
        if c.op == "delete":
            out.pop(c.id, None)
        elif c.stored is not None:
            out[c.id] = c.stored
    return out


def after_commit(plan: ApplyPlan, generation: int, lock_revision: int) -> PolicyState:
    """The state once ``plan`` is written as ``generation`` (the generation key now has ``lock_revision``)."""
    state = PolicyState(generation, lock_revision, merged(plan.base, plan.changes))
    if plan.policy is not None:  # already built while checking: seed the cached property, saving a rebuild
        state.__dict__["policy"] = plan.policy
    return state


def _checked(state: PolicyState, changes: list[Change]) -> ApplyPlan:
    """Reference-check and compile the merged policy, unless nothing would be written."""
    plan = ApplyPlan(state, tuple(changes))
    if plan.is_noop:
        return plan
    policy = _policy_after(state, plan.writes)
    sources = {c.id: c.source for c in changes}
    built = build_snapshots(policy)
    problems = [] if isinstance(built, dict) else [
        Problem(sources.get((r.kind, r.name), ""), r.kind, r.name, r.field, r.message) for r in built]
    return ApplyPlan(state, plan.changes, tuple(problems), policy)


def _policy_after(state: PolicyState, writes: Iterable[Change]) -> PolicySet:
    """Overlay ``writes`` on the state's policy set without rebuilding every group from scratch."""
    base = state.policy
    groups: dict[Kind, dict[str, AnyResource]] = {kind: dict(group) for kind, group in base.by_kind().items()}
    for c in writes:
        group = groups[c.kind]  # type: ignore[index]
        if c.op == "delete":
            group.pop(c.name, None)
        elif c.stored is not None:
            group[c.name] = c.stored.resource
    return PolicySet.from_groups(groups)


def history_entry(generation: int, time: str, who: str, changes: Iterable[Change],
                  action: str | None = None) -> dict[str, Any]:
    """What the history keeps of one generation: enough to show it, diff it and undo it. ``action`` names an
    operation that is more than its changes (``revoke``, ``rotate``, ``rollback``); absent for applies."""
    entry: dict[str, Any] = {
        "revision": generation, "time": time, "who": who,
        "changes": [{"op": c.op, "kind": c.kind, "name": c.name, "before": c.before, "after": c.after}
                    for c in changes if c.op != "unchanged"],
    }
    if action is not None:
        entry["action"] = action
    return entry


def history_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A history entry without the resource bodies, as ``GET /admin/v1/history`` lists it."""
    summary = {"revision": entry["revision"], "time": entry["time"], "who": entry["who"],
               "changes": [{"op": c["op"], "kind": c["kind"], "name": c["name"]} for c in entry["changes"]]}
    if "action" in entry:
        summary["action"] = entry["action"]
    if "rollout" in entry:
        summary["rollout"] = entry["rollout"]
    return summary


def canonical_text(body: dict[str, Any] | None) -> list[str]:
    """The canonical JSON, indented, as lines ending in newlines (what diffs are made of)."""
    if body is None:
        return []
    return [line + "\n" for line in orjson.dumps(body, option=orjson.OPT_INDENT_2).decode().split("\n")]


def diff_text(kind: str, name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Unified diff of the canonical JSON of ``before`` and ``after`` (``/dev/null`` for an absent side)."""
    old, new = canonical_text(before), canonical_text(after)
    a = f"a/{kind}/{name}" if before is not None else "/dev/null"
    b = f"b/{kind}/{name}" if after is not None else "/dev/null"
    if not old or not new:  # whole-file add or remove: the common bulk case, built directly for speed
        sign, lines = ("+", new) if new else ("-", old)
        span = f"-0,0 +1,{len(new)}" if new else f"-1,{len(old)} +0,0"
        return f"--- {a}\n+++ {b}\n@@ {span} @@\n" + "".join(sign + line for line in lines)
    return "".join(difflib.unified_diff(old, new, fromfile=a, tofile=b))
