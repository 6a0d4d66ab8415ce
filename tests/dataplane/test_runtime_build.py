"""Runtime.from_snapshot: a consistent snapshot builds; each kind of inconsistency is refused whole."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from controlplane.policy.compile import compile_policy
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.snapshot.runtime import InvalidSnapshot, Runtime
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, build_snapshot
from tollway.keyformat import hash_key
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

ENV = {CREDENTIAL_ENV: CREDENTIAL}


def test_builds_lookups_with_residency() -> None:
    snap, keys = build_snapshot()
    rt = Runtime.from_snapshot(snap, ENV)
    assert rt.version == "v-test-1"
    assert rt.keys[hash_key(keys.acme_all)].tenant.name == "acme"
    # acme may only send data to eu: the us deployment is not a candidate for it, but is for globex.
    assert [c.deployment.name for c in rt.candidates_for("acme", "chat")] == ["gpt-eu"]
    assert [c.deployment.name for c in rt.candidates_for("globex", "chat")] == ["gpt-eu", "gpt-us"]
    assert rt.candidates_for("acme", "us-only") == ()
    # globex's tenant allow list has only chat.
    assert rt.candidates_for("globex", "mock") == ()
    assert rt.keys[hash_key(keys.acme_all)].models == ("backup", "chat", "mock", "split")
    assert rt.keys[hash_key(keys.acme_mock)].models == ("mock",)
    assert rt.keys[hash_key(keys.globex)].models == ("chat",)
    assert rt.routes["chat"].candidates[0].deployment.provider.credential == CREDENTIAL


def test_credential_is_resolved_once_and_kept_out_of_repr() -> None:
    snap, _ = build_snapshot()
    rt = Runtime.from_snapshot(snap, ENV)
    provider_ = rt.routes["chat"].candidates[0].deployment.provider
    assert CREDENTIAL not in repr(provider_)
    assert Runtime.from_snapshot(snap, {}).routes["chat"].candidates[0].deployment.provider.credential is None


def _mutation_cases() -> list[tuple[str, Callable[[pb.Snapshot], None], str]]:
    def dup_tenant(s: pb.Snapshot) -> None:
        s.tenants.add(name="acme", regions=["eu"])

    def short_hash(s: pb.Snapshot) -> None:
        s.keys[0].hash = b"\x00" * 16

    def dup_hash(s: pb.Snapshot) -> None:
        s.keys[1].hash = s.keys[0].hash

    def key_tenant(s: pb.Snapshot) -> None:
        s.keys[0].tenant = "nobody"

    def key_project(s: pb.Snapshot) -> None:
        s.keys[0].project = "mobile"

    def dep_provider(s: pb.Snapshot) -> None:
        s.deployments[0].provider = "nowhere"

    def route_dep(s: pb.Snapshot) -> None:
        s.routes[0].deployments.append("ghost")

    def bad_strategy(s: pb.Snapshot) -> None:
        s.routes[0].strategy = "random"

    def bad_weights(s: pb.Snapshot) -> None:
        del s.routes[4].weights[:]

    def bad_type(s: pb.Snapshot) -> None:
        s.providers[0].type = "watsonx"

    def bad_url(s: pb.Snapshot) -> None:
        s.providers[0].base_url = "ftp://x"

    def no_version(s: pb.Snapshot) -> None:
        s.version = ""

    def bad_failover(s: pb.Snapshot) -> None:
        s.routes[0].failover.on.append("always")

    def tenant_no_region(s: pb.Snapshot) -> None:
        del s.tenants[0].regions[:]

    return [
        ("duplicate tenant", dup_tenant, "tenant 'acme' appears twice"),
        ("short key hash", short_hash, "hash is 16 bytes"),
        ("duplicate key hash", dup_hash, "same hash as key"),
        ("key tenant missing", key_tenant, "tenant 'nobody' does not exist"),
        ("key project missing", key_project, "project 'mobile' is not a project"),
        ("deployment provider missing", dep_provider, "provider 'nowhere' does not exist"),
        ("route deployment missing", route_dep, "deployment 'ghost' does not exist"),
        ("unknown strategy", bad_strategy, "unknown strategy 'random'"),
        ("weighted without weights", bad_weights, "weighted strategy without weights"),
        ("unknown provider type", bad_type, "unknown type 'watsonx'"),
        ("non-http base url", bad_url, "base_url must be an http(s) URL"),
        ("no version", no_version, "no version"),
        ("unknown failover condition", bad_failover, "unknown failover conditions"),
        ("tenant without regions", tenant_no_region, "no regions"),
    ]


@pytest.mark.parametrize(("mutate", "message"), [(m, msg) for _, m, msg in _mutation_cases()],
                         ids=[name for name, _, _ in _mutation_cases()])
def test_inconsistent_snapshot_is_refused(mutate: Callable[[pb.Snapshot], None], message: str) -> None:
    snap, _ = build_snapshot()
    mutate(snap)
    with pytest.raises(InvalidSnapshot, match=re.escape(message)):
        Runtime.from_snapshot(snap, ENV)


def test_holder_keeps_old_runtime_when_refusing() -> None:
    holder = SnapshotHolder()
    good, _ = build_snapshot()
    assert holder.install(good) is None
    bad = pb.Snapshot()
    bad.CopyFrom(good)
    bad.version = "v-bad"
    bad.keys[0].hash = b"short"
    error = holder.install(bad)
    assert error is not None and "hash is 5 bytes" in error
    assert holder.version == "v-test-1"


def test_compiled_snapshot_builds() -> None:
    policy = policy_of(
        tenant("acme", "eu", projects=("web",)),
        provider("openai-eu", "eu"), provider("openai-us", "us"),
        model("small-eu", "openai-eu"), model("small-us", "openai-us"),
        route("chat", "small-eu", "small-us"),
        api_key("k1", "acme", project="web"),
    )
    snaps = compile_policy(policy)
    rt = Runtime.from_snapshot(snaps["eu"], {})
    assert [c.deployment.name for c in rt.candidates_for("acme", "chat")] == ["small-eu"]
    assert rt.version == snaps["eu"].version
