"""The store-backed repository, on both backends (the ``store`` fixture): what lands in the store, and what not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlplane.errors import Conflict, InUse, InvalidPolicy, InvalidRequest, NotFound
from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from controlplane.store.layout import GENERATION, RESOURCES, history_key, resource_key
from tests.core.policy_docs import api_key, model, provider, route, tenant
from tollway import keyformat

BASE = [provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu", projects=("web",))]


def docs(*bodies: dict[str, Any]) -> list[Document]:
    return [Document(f"policy.yaml#{i}", b) for i, b in enumerate(bodies)]


async def keys_in(store: Store) -> dict[str, bytes]:
    return {kv.key: kv.value for kv in (await store.list("/tollway/")).items}


async def test_apply_writes_resources_generation_and_history_at_once(store: Store) -> None:
    repo = Repository(store, clock=lambda: "2026-01-01T00:00:00.000Z")
    result = await repo.apply(docs(*BASE), who="alice")
    assert (result.revision, result.applied) == (1, True)
    assert [c.op for c in result.changes] == ["create"] * 4
    stored = await keys_in(store)
    assert set(stored) == {resource_key("Provider", "p"), resource_key("Model", "m"), resource_key("Route", "r"),
                           resource_key("Tenant", "t"), GENERATION, history_key(1)}
    assert orjson.loads(stored[GENERATION])["generation"] == 1
    entry = orjson.loads(stored[history_key(1)])
    assert (entry["revision"], entry["who"], entry["time"]) == (1, "alice", "2026-01-01T00:00:00.000Z")
    assert {(c["op"], c["kind"], c["name"]) for c in entry["changes"]} == {
        ("create", "Provider", "p"), ("create", "Model", "m"), ("create", "Route", "r"), ("create", "Tenant", "t")}
    # all of it in one transaction: every key carries the same mod_revision
    assert len({kv.mod_revision for kv in (await store.list("/tollway/")).items}) == 1


async def test_reapply_without_changes_writes_nothing(store: Store) -> None:
    repo = Repository(store)
    await repo.apply(docs(*BASE), who="alice")
    before = (await store.list("/tollway/")).revision
    again = await Repository(store).apply(docs(*BASE), who="bob")  # a fresh repository: no cache to help
    assert (again.revision, again.applied) == (1, False)
    assert {c.op for c in again.changes} == {"unchanged"}
    assert (await store.list("/tollway/")).revision == before


async def test_only_changed_resources_are_rewritten(store: Store) -> None:
    repo = Repository(store)
    await repo.apply(docs(*BASE), who="alice")
    old = {kv.key: kv.mod_revision for kv in (await store.list(RESOURCES)).items}
    result = await repo.apply(docs(provider("p", base_url="http://127.0.0.1:2/v1"), route("r", "m")), who="alice")
    assert [(c.op, c.name) for c in result.changes] == [("update", "p"), ("unchanged", "r")]
    new = {kv.key: kv.mod_revision for kv in (await store.list(RESOURCES)).items}
    assert [k for k in new if new[k] != old[k]] == [resource_key("Provider", "p")]


async def test_invalid_apply_writes_nothing(store: Store) -> None:
    repo = Repository(store)
    bad = model("m2", "p")
    bad["spec"]["pricing"]["inputPerMillion"] = "-1"
    with pytest.raises(InvalidPolicy) as caught:
        await repo.apply(docs(*BASE, bad, api_key("k", "nobody")), who="alice")
    assert {(p.source, p.field) for p in caught.value.problems} == {("policy.yaml#4", "spec.pricing.inputPerMillion")}
    assert await keys_in(store) == {}
    with pytest.raises(InvalidPolicy) as caught:
        await repo.apply(docs(*BASE, api_key("k", "nobody")), who="alice")
    assert [(p.source, p.kind, p.name, p.field) for p in caught.value.problems] == [
        ("policy.yaml#4", "ApiKey", "k", "spec.tenant")]
    assert await keys_in(store) == {}


async def test_stale_expected_revision_and_lost_compare_conflict(store: Store) -> None:
    alice, bob = Repository(store), Repository(store)
    await alice.apply(docs(*BASE), who="alice")
    with pytest.raises(Conflict):
        await alice.apply(docs(route("r2", "m")), who="alice", expected_revision=0)
    # Bob plans against generation 1; Alice writes generation 2 meanwhile; Bob's compare must lose.
    from controlplane.policy import engine
    plan = engine.plan_apply(await bob.state(), docs(route("r3", "m")))
    await alice.apply(docs(route("r2", "m")), who="alice")
    before = await keys_in(store)
    with pytest.raises(Conflict):
        await bob.commit(plan, "bob")
    assert await keys_in(store) == before
    # and Bob, reading again, sees Alice's write and can go on
    assert (await bob.apply(docs(route("r3", "m")), who="bob", expected_revision=2)).revision == 3


async def test_delete_refuses_while_referred_to(store: Store) -> None:
    repo = Repository(store)
    await repo.apply(docs(*BASE), who="alice")
    with pytest.raises(InUse) as caught:
        await repo.delete("models", "m", who="alice")
    assert [(p.kind, p.name, p.field) for p in caught.value.referrers] == [("Route", "r", "spec.models[0]")]
    assert str(caught.value).startswith("cannot delete Model/m: still referred to by Route/r (spec.models[0])")
    with pytest.raises(NotFound):
        await repo.delete("Route", "nope", who="alice")
    assert await repo.delete("route", "r", who="alice") == 2
    assert resource_key("Route", "r") not in await keys_in(store)


async def test_create_key_stores_only_hash_and_hint(store: Store) -> None:
    repo = Repository(store)
    await repo.apply(docs(*BASE), who="alice")
    created = await repo.create_key("ci", "t", who="alice", project="web")
    assert keyformat.is_well_formed(created.secret) and created.revision == 2
    stored = await keys_in(store)
    assert all(created.secret.encode() not in v for v in stored.values())
    spec = orjson.loads(stored[resource_key("ApiKey", "ci")])["spec"]
    assert spec["hash"] == "sha256:" + keyformat.hash_key(created.secret).hex()
    assert spec["hint"] == created.hint == keyformat.hint(created.secret)
    with pytest.raises(Conflict):
        await repo.create_key("ci", "t", who="alice")
    with pytest.raises(InvalidPolicy):
        await repo.create_key("ci2", "t", who="alice", project="nope")


async def test_rollback_restores_generation_exactly(store: Store) -> None:
    repo = Repository(store)
    await repo.apply(docs(*BASE), who="alice")
    g1 = {kv.key: kv.value for kv in (await store.list(RESOURCES)).items}
    await repo.apply(docs(provider("p", base_url="http://127.0.0.1:2/v1"), route("r2", "m")), who="alice")
    await repo.create_key("ci", "t", who="bob")
    await repo.delete("Route", "r", who="carol")
    kept = await repo.rollback(1, who="dave", dry_run=True)  # keys stay unless asked
    assert [(k.name, k.op, k.reason) for k in kept.kept] == [("ci", "delete", "keys-excluded")]
    assert ("delete", "ApiKey", "ci") not in [(c.op, c.kind, c.name) for c in kept.changes]
    result = await repo.rollback(1, who="dave", include_keys=True)
    assert (result.revision, result.applied, result.kept) == (5, True, ())
    assert {kv.key: kv.value for kv in (await store.list(RESOURCES)).items} == g1
    history = await repo.history()
    assert [(e["revision"], e["who"]) for e in history] == [
        (5, "dave"), (4, "carol"), (3, "bob"), (2, "alice"), (1, "alice")]
    with pytest.raises(NotFound):
        await repo.rollback(9, who="dave")
    # rolling back to 0 would delete everything, which is consistent, so it is allowed
    assert (await repo.rollback(0, who="dave", dry_run=True)).applied is False


async def test_rollback_that_strands_a_kept_key_says_how_to_proceed(store: Store) -> None:
    repo = Repository(store, unix_clock=lambda: 1_000_000)
    await repo.apply(docs(*BASE), who="alice")
    await repo.apply(docs(tenant("t2", "eu")), who="alice")
    await repo.create_key("k2", "t2", who="bob")
    with pytest.raises(InvalidPolicy) as caught:
        await repo.rollback(1, who="dave")
    assert [(p.kind, p.name, p.field) for p in caught.value.problems] == [("ApiKey", "k2", "spec.tenant")]
    assert "--include-keys rolls them back too" in caught.value.problems[0].message
    assert len(await repo.history()) == 3  # nothing written
    rotated = await repo.rotate_key("k2", who="bob", overlap_seconds=60)
    assert rotated.previous_expires_at == 1_000_060 and rotated.revision == 4
    result = await repo.rollback(1, who="dave", include_keys=True)
    assert sorted((c.op, c.kind, c.name) for c in result.changes) == [("delete", "ApiKey", "k2"),
                                                                      ("delete", "Tenant", "t2")]
    with pytest.raises(InvalidRequest):
        await repo.rotate_key("k", who="bob", overlap_seconds=-1)


async def test_cache_follows_other_writers(store: Store) -> None:
    alice, bob = Repository(store), Repository(store)
    await alice.apply(docs(*BASE), who="alice")
    assert (await bob.get("Route"))[1][0]["metadata"]["name"] == "r"
    await alice.apply(docs(route("r", "m", strategy="priority")), who="alice")
    revision, items = await bob.get("Route", "r")
    assert (revision, items[0]["spec"]["strategy"]) == (2, "priority")
