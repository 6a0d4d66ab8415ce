"""Relisting reuses what an earlier listing validated only where the stored bytes are the very same."""

from __future__ import annotations

import orjson

from controlplane.policy.resources import dump_resource, parse_resource
from controlplane.push.publisher import _Resources
from controlplane.store.base import KeyValue
from controlplane.store.layout import resource_key
from tests.core.policy_docs import api_key, tenant


def kv(doc: dict[str, object], revision: int) -> KeyValue:
    r = parse_resource(doc)
    return KeyValue(resource_key(r.kind, r.name), orjson.dumps(dump_resource(r)), revision)


def test_relisting_reuses_unchanged_resources_and_decodes_changed_ones() -> None:
    t, k1, k2 = kv(tenant("t", "eu"), 1), kv(api_key("k1", "t", "01" * 32), 2), kv(api_key("k2", "t", "02" * 32), 3)
    first = _Resources.decode([t, k1, k2])
    before = first.policy()

    rotated = kv(api_key("k2", "t", "0f" * 32), 9)
    garbage = KeyValue(resource_key("ApiKey", "k3"), b"{not json", 10)
    second = _Resources.decode([t, k1, rotated, garbage], first).policy()

    assert second.tenants["t"] is before.tenants["t"] and second.keys["k1"] is before.keys["k1"]
    assert second.keys["k2"].spec.hash == "sha256:" + "0f" * 32
    assert sorted(second.keys) == ["k1", "k2"]  # the unreadable one is skipped, as on a first listing
    third = _Resources.decode([t], _Resources.decode([t, k1, rotated], first)).policy()
    assert sorted(third.keys) == [] and third.tenants["t"] is before.tenants["t"]
