"""Who may call a data plane, as a snapshot's runtime form holds it: tenants (their regions, routes and logging
policy) and their keys, and the error of a snapshot that is inconsistent. Value classes (``tests/core/
test_values.py``), compiled with the request path (``dataplane.compiled``) as ``dataplane.snapshot.catalog`` is.

``dataplane.snapshot.key_table`` builds the keys of a snapshot; ``dataplane.snapshot.runtime`` the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from dataplane.errors import DataPlaneError

ContentMode = Literal["none", "hashed", "redacted", "full"]
CONTENT_MODES: frozenset[str] = frozenset({"none", "hashed", "redacted", "full"})


class InvalidSnapshot(DataPlaneError):
    """The snapshot is inconsistent; the message names the object and field at fault."""


@dataclass(unsafe_hash=True)
class ContentPolicy:
    """The runtime form of a ``LoggingPolicy``: what the log keeps, and whether to redact before the provider."""

    mode: Final[ContentMode]
    redact_before_provider: Final[bool]

    def __init__(self, mode: ContentMode = "none", redact_before_provider: bool = False) -> None:
        self.mode = mode
        self.redact_before_provider = redact_before_provider

    @classmethod
    def from_fields(cls, content: str, redact_before_provider: bool) -> ContentPolicy:
        """From the snapshot's fields; an unknown or empty mode keeps nothing (fail closed)."""
        mode: ContentMode = content if content in CONTENT_MODES else "none"  # type: ignore[assignment]
        return cls(mode, redact_before_provider)


NO_CONTENT = ContentPolicy()


@dataclass(unsafe_hash=True)
class Tenant:
    name: Final[str]
    projects: Final[frozenset[str]]
    regions: Final[frozenset[str]]
    routes: Final[frozenset[str]]  # empty: every route
    content: Final[ContentPolicy]  # what the request log keeps; whether to redact before the provider

    def __init__(self, name: str, projects: frozenset[str], regions: frozenset[str], routes: frozenset[str],
                 content: ContentPolicy = NO_CONTENT) -> None:
        self.name = name
        self.projects = projects
        self.regions = regions
        self.routes = routes
        self.content = content


@dataclass(unsafe_hash=True)
class Key:
    """A client key as the data plane knows it: its hash and what it may reach."""

    id: Final[str]
    hash: bytes = field(repr=False)
    tenant: Final[Tenant]
    project: Final[str]
    expires_at: Final[int]
    # Route names this key may use (key ∩ tenant allow lists), whether or not they are servable here.
    routes: Final[frozenset[str]]
    # What GET /v1/models shows: allowed routes with at least one candidate in the tenant's regions, sorted.
    models: Final[tuple[str, ...]]

    def __init__(self, id: str, hash: bytes, tenant: Tenant, project: str, expires_at: int, routes: frozenset[str],
                 models: tuple[str, ...]) -> None:
        self.id = id
        self.hash = hash
        self.tenant = tenant
        self.project = project
        self.expires_at = expires_at
        self.routes = routes
        self.models = models

    def is_expired(self, now: float) -> bool:
        return self.expires_at != 0 and now >= self.expires_at


def check_unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InvalidSnapshot(f"{kind} with an empty name")
        if name in seen:
            raise InvalidSnapshot(f"{kind} {name!r} appears twice")
        seen.add(name)
