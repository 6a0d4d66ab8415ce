"""Label selectors (``gatectl get -l``), after kubectl's equality-based ones. Pure.

A selector is requirements separated by commas, all of which must hold for a resource's ``metadata.labels``:
``key=value`` (or ``key==value``), ``key!=value`` (true when the label is absent, as in kubectl), ``key`` (the
label is present) and ``!key`` (it is absent). Keys and values follow the policy schema's label rules
(``controlplane.policy.resources.LABEL_KEY_RE``/``LABEL_VALUE_RE``), so a typo is refused, never matched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cli.errors import UsageError
from controlplane.policy.resources import LABEL_KEY_RE, LABEL_VALUE_RE

Op = Literal["=", "!=", "exists", "absent"]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    value: str = ""

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "absent":
            return self.key not in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


Selector = tuple[Requirement, ...]


def parse_selector(text: str) -> Selector:
    """The requirements of ``text``; raises ``UsageError`` naming the one that is wrong."""
    if re.search(r"\s(not)?in\s*\(", text):
        raise UsageError(f"-l {text!r}: set-based requirements (in, notin) are not supported; use key=value, "
                         "key!=value, key or !key")
    requirements = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            raise UsageError(f"-l {text!r}: empty requirement (use key=value, key!=value, key or !key, "
                             "separated by commas)")
        if term.startswith("!") and "=" not in term:
            requirement = Requirement(term[1:].strip(), "absent")
        elif "!=" in term:
            key, _, value = term.partition("!=")
            requirement = Requirement(key.strip(), "!=", value.strip())
        elif "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            requirement = Requirement(key.strip(), "=", value.strip())
        else:
            requirement = Requirement(term, "exists")
        if not re.match(LABEL_KEY_RE, requirement.key):
            raise UsageError(f"-l {text!r}: {requirement.key!r} is not a valid label key")
        if not re.match(LABEL_VALUE_RE, requirement.value):
            raise UsageError(f"-l {text!r}: {requirement.value!r} is not a valid label value")
        requirements.append(requirement)
    return tuple(requirements)


def labels_of(item: Mapping[str, Any]) -> dict[str, str]:
    metadata = item.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def matches(selector: Selector, item: Mapping[str, Any]) -> bool:
    labels = labels_of(item)
    return all(r.holds(labels) for r in selector)
