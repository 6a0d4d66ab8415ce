"""Where the control plane keeps things in the store, and how resources are read back.

Keys::

    /tollway/resources/{Kind}/{name}   canonical JSON of one resource (controlplane.policy.resources.dump_resource)
    /tollway/meta/generation           JSON {"generation": N}: bumped by every policy write; the optimistic lock
    /tollway/history/{N:012d}          JSON history entry of policy generation N (who, when, what changed)
    /tollway/rollout/current           JSON of the active staged rollout (controlplane.rollout.state), if any

Every policy write is one transaction that compares ``/tollway/meta/generation``'s mod_revision with the one
the change was computed against, so concurrent writers cannot interleave.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from pydantic import ValidationError

from controlplane.policy.compile import AnyResource, PolicySet
from controlplane.policy.resources import ApiKey, Kind, Model, Provider, Route, Tenant, parse_resource
from controlplane.store.base import KeyValue, Store

ROOT = "/tollway/"
RESOURCES = "/tollway/resources/"
GENERATION = "/tollway/meta/generation"
HISTORY = "/tollway/history/"
ROLLOUT = "/tollway/rollout/current"


def resource_key(kind: Kind | str, name: str) -> str:
    return f"{RESOURCES}{kind}/{name}"


def history_key(generation: int) -> str:
    return f"{HISTORY}{generation:012d}"


_MODELS: Mapping[str, type[AnyResource]] = {
    "Tenant": Tenant, "ApiKey": ApiKey, "Provider": Provider, "Model": Model, "Route": Route,
}


def decode_resource(kv: KeyValue) -> AnyResource:
    """Validate one stored resource fully, exactly as on write. Raises ``ValueError`` if it does not validate.

    The store is trusted only as far as what the admin API validated on write, and a hand-edited store skips
    that: so nothing here takes a shortcut around validation. What is saved is the work around it: the kind in
    the key's path picks the model, which parses the JSON bytes itself (~15% cheaper than decoding to a dict
    and letting the tagged union of every kind choose). A document whose path and kind disagree, or that does
    not validate, goes through the union, which accepts or refuses it as it always has.
    """
    model = _MODELS.get(kv.key[len(RESOURCES):].partition("/")[0]) if kv.key.startswith(RESOURCES) else None
    if model is not None:
        try:
            return model.model_validate_json(kv.value)
        except ValidationError:
            pass  # not necessarily invalid (filed under another kind's path): the union below decides and explains
    return parse_resource(orjson.loads(kv.value))


async def load_policy(store: Store) -> tuple[PolicySet, int]:
    """Every resource, read at one revision; returns the policy and that revision."""
    listing = await store.list(RESOURCES)
    return PolicySet.of(decode_resource(kv) for kv in listing.items), listing.revision


# --- Budgets (controlplane.money.ledger) ------------------------------------------------------------------------------
#
#     /tollway/budgets/spend/{YYYY-MM}/{scope}      JSON ScopeState: spent and per-node grants of one scope-month
#     /tollway/budgets/settled/{node}/{epoch}       JSON BatchMarker: which usage batches were settled
#
# Scopes are ``tenant/T``, ``project/T/P``, ``key/K``, ``user/T/U`` (see ``tollway.budget_scopes``). Alert events
# (soft threshold crossed, budget exhausted, ...) are kept under ``/tollway/alerts/`` (``controlplane.alerts.events``).

BUDGETS = "/tollway/budgets/"


def budget_key(period: str, scope: str) -> str:
    return f"{BUDGETS}spend/{period}/{scope}"


def budget_settled_key(node: str, epoch: str) -> str:
    return f"{BUDGETS}settled/{node}/{epoch}"
