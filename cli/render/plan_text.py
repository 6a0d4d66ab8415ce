"""``gatectl plan`` as text for people: per region, ``+``/``-``/``~`` lines like ``terraform plan``. Pure functions.

Reads the admin API's answer (``controlplane.policy.plan.PolicyPlan.to_json``). Values are shown in the units
people think in: budgets (``…Micros``) as dollars, prices (``prices.*``, micro-dollars per million tokens) as
dollars per million tokens, lists comma-separated. Created and deleted keys take one line each (a first apply
may create 100,000). Nothing here can show a secret: the answer holds none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

SIGNS = {"create": "+", "delete": "-", "update": "~"}
ITEM_INDENT, FIELD_INDENT = "  ", "      "


def dollars(micros: int) -> str:
    return f"${Decimal(micros).scaleb(-6).normalize():,f}"


def show_value(field: str, value: Any) -> str:
    """One fact's value as a person reads it."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, int) and field.startswith("prices."):
        return f"{dollars(value)}/1M tokens"
    if isinstance(value, int) and field.endswith("Micros"):
        return dollars(value)
    return str(value)


def field_line(op: str, change: Mapping[str, Any]) -> str:
    name, old, new = str(change.get("field")), change.get("old"), change.get("new")
    if op == "create" or old is None:
        return f"{FIELD_INDENT}+ {name}: {show_value(name, new)}"
    if op == "delete" or new is None:
        return f"{FIELD_INDENT}- {name}: {show_value(name, old)}"
    return f"{FIELD_INDENT}~ {name}: {show_value(name, old)} → {show_value(name, new)}"


def _key_owner(fields: Sequence[Mapping[str, Any]], side: str) -> str:
    facts = {str(f.get("field")): f.get(side) for f in fields}
    owner = f"tenant {facts.get('tenant')}"
    return owner + (f", project {facts['project']}" if facts.get("project") else "")


def item_lines(item: Mapping[str, Any]) -> list[str]:
    op, kind, name = str(item.get("op")), str(item.get("kind")), str(item.get("name"))
    fields: list[Mapping[str, Any]] = [f for f in item.get("fields") or [] if isinstance(f, Mapping)]
    head = f"{ITEM_INDENT}{SIGNS.get(op, '?')} {kind} {name}"
    if kind == "key" and op in ("create", "delete"):
        return [f"{head} ({_key_owner(fields, 'new' if op == 'create' else 'old')})"]
    if op == "delete":
        return [head]
    return [head, *(field_line(op, f) for f in fields)]


def region_lines(region: Mapping[str, Any]) -> list[str]:
    name = region.get("region")
    version = region.get("version") or {}
    current, proposed = version.get("current") or "(none)", version.get("proposed") or "(none)"
    if not region.get("changed"):
        return [f"region {name}: no changes (snapshot {current})"]
    items: list[Mapping[str, Any]] = [c for c in region.get("changes") or [] if isinstance(c, Mapping)]
    lines = [f"region {name}: snapshot {current} → {proposed}"]
    for item in items:
        lines.extend(item_lines(item))
    if not items:
        lines.append(f"{ITEM_INDENT}~ snapshot content (no fact shown by plan changed)")
    return lines


def tally(regions: Sequence[Mapping[str, Any]]) -> str:
    """``Plan: 1 of 2 regions change: 3 to add, 2 to change, 1 to remove.``"""
    ops = {"create": 0, "update": 0, "delete": 0}
    for region in regions:
        for item in region.get("changes") or []:
            if isinstance(item, Mapping) and item.get("op") in ops:
                ops[str(item.get("op"))] += 1
    changed = sum(1 for r in regions if r.get("changed"))
    return (f"Plan: {changed} of {len(regions)} region{'s' if len(regions) != 1 else ''} change: "
            f"{ops['create']} to add, {ops['update']} to change, {ops['delete']} to remove.")


def render_plan(answer: Mapping[str, Any]) -> str:
    """The whole plan: one block per region, a blank line between blocks, the tally last."""
    regions: list[Mapping[str, Any]] = [r for r in answer.get("regions") or [] if isinstance(r, Mapping)]
    blocks = ["\n".join(region_lines(r)) for r in regions]
    return "\n\n".join([*blocks, tally(regions)]) + "\n"
