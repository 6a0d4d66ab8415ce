"""Errors of the control plane's policy operations (apply, delete, keys, rollback), raised by the repository.

Hierarchy::

    ControlPlaneError
    ├── InvalidPolicy      the documents (or the policy they would produce) are invalid; ``problems`` says why
    ├── Conflict           the policy changed since the caller read it; nothing written
    │   ├── AlreadyExists  the name is taken (retrying cannot help)
    │   ├── KeyRevoked     a rotate or revoke of a key that is revoked (retrying cannot help)
    │   └── RolloutInProgress  a policy write during a staged rollout (promote or abort it first)
    ├── InUse              a delete refused because other resources refer to the one named; ``referrers`` says which
    ├── NotFound           no such resource, or no such generation in the history
    └── InvalidRequest     the request itself is malformed (unknown kind, bad body)

Store errors (``controlplane.store.base.StoreError`` and its subclasses) pass through unchanged: they are a
separate tree, and the admin API maps them to 503. Exactly one place, ``controlplane.admin.api``, turns these
into HTTP answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One reason a policy was rejected: which document (``source``), which resource, which field, and why."""

    source: str
    kind: str
    name: str
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "name": self.name, "field": self.field,
                "message": self.message}

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.kind}/{self.name}: {self.field}: {self.message}"


class ControlPlaneError(Exception):
    """Base of every control-plane policy error."""


class InvalidPolicy(ControlPlaneError):
    """Validation, duplicate, reference or compile problems; every one found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        first = str(self.problems[0]) if self.problems else "invalid policy"
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"{first}{more}")


class Conflict(ControlPlaneError):
    """A stale ``expectedRevision`` or a concurrent writer that won the compare."""


class AlreadyExists(Conflict):
    """A create for a name that is in use."""


class KeyRevoked(Conflict):
    """A rotate or revoke of a key that is already revoked."""


class RolloutInProgress(Conflict):
    """A policy write (or a second rollout) while a staged rollout is active; the message names the rollout."""


class InUse(ControlPlaneError):
    """A delete of a resource that others still refer to; ``referrers`` names each (kind, name, field)."""

    def __init__(self, kind: str, name: str, referrers: Sequence[Problem]) -> None:
        self.referrers = tuple(referrers)
        named = ", ".join(f"{p.kind}/{p.name} ({p.field})" for p in self.referrers)
        super().__init__(f"cannot delete {kind}/{name}: still referred to by {named}; change or delete "
                         f"{'it' if len(self.referrers) == 1 else 'them'} first")


class NotFound(ControlPlaneError):
    """The resource or history generation does not exist."""


class InvalidRequest(ControlPlaneError):
    """A malformed request: unknown kind, wrong field types in the request body."""


MAX_COUNT_DIGITS = 18  # below 2**63: every count, revision, limit and expiry the admin API takes


def is_count(text: str) -> bool:
    """A non-negative integer written in ASCII digits, short enough to be one (``str.isdigit`` also accepts
    superscripts and other Unicode digits ``int`` refuses, and ``int`` refuses 4,300 digits and more)."""
    return 0 < len(text) <= MAX_COUNT_DIGITS and text.isascii() and text.isdigit()
