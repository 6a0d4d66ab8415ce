"""Where the control plane keeps things in the store, and how resources are read back.

Keys::

    /tollway/resources/{Kind}/{name}   canonical JSON of one resource (controlplane.policy.dump_resource)
    /tollway/meta/generation           JSON {"generation": N}: bumped by every policy write; the optimistic lock
    /tollway/history/{N:012d}          JSON history entry of policy generation N (who, when, what changed)

Every policy write is one transaction that compares ``/tollway/meta/generation``'s mod_revision with the one
the change was computed against, so concurrent writers cannot interleave.
"""

from __future__ import annotations

import orjson

from controlplane.compile import AnyResource, PolicySet
from controlplane.policy import Kind, parse_resource
from controlplane.store.base import KeyValue, Store

ROOT = "/tollway/"
RESOURCES = "/tollway/resources/"
GENERATION = "/tollway/meta/generation"
HISTORY = "/tollway/history/"


def resource_key(kind: Kind | str, name: str) -> str:
    return f"{RESOURCES}{kind}/{name}"


def history_key(generation: int) -> str:
    return f"{HISTORY}{generation:012d}"


def decode_resource(kv: KeyValue) -> AnyResource:
    return parse_resource(orjson.loads(kv.value))


async def load_policy(store: Store) -> tuple[PolicySet, int]:
    """Every resource, read at one revision; returns the policy and that revision."""
    listing = await store.list(RESOURCES)
    return PolicySet.of(decode_resource(kv) for kv in listing.items), listing.revision
