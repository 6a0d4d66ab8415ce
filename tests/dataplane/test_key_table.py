"""The runtime's keys: validated whole before a runtime exists, each ``Key`` built on its first lookup."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from dataplane.snapshot.key_table import _STEP
from dataplane.snapshot.runtime import InvalidSnapshot, Key, Runtime
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, build_snapshot
from tollway.keyformat import hash_key
from tollway.pb import snapshot_pb2 as pb

pytestmark = pytest.mark.pure

ENV = {CREDENTIAL_ENV: CREDENTIAL}


def many_keys(n: int = 500) -> pb.Snapshot:
    snap, _ = build_snapshot()
    for i in range(n):
        snap.keys.add(id=f"bulk-{i}", hash=i.to_bytes(32, "big"), tenant="acme" if i % 2 else "globex",
                      routes=["mock"] if i % 3 == 0 and i % 2 else [])
    return snap


def test_lookups_build_keys_once_and_share_allow_lists() -> None:
    snap, keys = build_snapshot()
    for i in range(4):
        snap.keys.add(id=f"bulk-{i}", hash=i.to_bytes(32, "big"), tenant="acme", project="web" if i else "")
    rt = Runtime.from_snapshot(snap, ENV)
    assert len(rt.keys) == len(snap.keys) and set(rt.keys) == {k.hash for k in snap.keys}
    assert bytes(32) in rt.keys and b"\x01" * 32 not in rt.keys and rt.keys.get(b"\x01" * 32) is None
    with pytest.raises(KeyError):
        rt.keys[b"\x01" * 32]
    first = rt.keys[(1).to_bytes(32, "big")]
    assert first is rt.keys.get((1).to_bytes(32, "big"))  # built once, then the same object
    assert first == Key(id="bulk-1", hash=(1).to_bytes(32, "big"), tenant=rt.tenants["acme"], project="web",
                        expires_at=0, routes=rt.keys[hash_key(keys.acme_all)].routes,
                        models=("backup", "chat", "mock", "split"))
    # Keys of one tenant with the same allow list share one frozenset and one models tuple.
    second = rt.keys[(2).to_bytes(32, "big")]
    assert first.routes is second.routes and first.models is second.models
    assert rt.keys[hash_key(keys.acme_mock)].routes == frozenset({"mock"})
    assert hash_key(keys.acme_all).hex() not in repr(rt.keys)


def _bad_key_cases() -> list[tuple[str, Callable[[pb.Snapshot], None], str]]:
    def k(s: pb.Snapshot, i: int) -> pb.ApiKey:
        return s.keys[len(s.keys) - 500 + i]

    def dup_id(s: pb.Snapshot) -> None:
        k(s, 300).id = "bulk-7"

    def empty_id(s: pb.Snapshot) -> None:
        k(s, 300).id = ""

    def negative_expiry(s: pb.Snapshot) -> None:
        k(s, 300).expires_at = -1

    def two_problems(s: pb.Snapshot) -> None:  # the first in snapshot order is the one named
        k(s, 400).tenant = "nobody"
        k(s, 200).hash = b"\x01"

    def dup_hash_late(s: pb.Snapshot) -> None:
        k(s, 499).hash = k(s, 3).hash

    return [
        ("duplicate key id", dup_id, "key 'bulk-7' appears twice"),
        ("empty key id", empty_id, "key with an empty name"),
        ("negative expiry", negative_expiry, "key 'bulk-300': negative expires_at"),
        ("first problem wins", two_problems, "key 'bulk-200': hash is 1 bytes"),
        ("duplicate hash", dup_hash_late, "key 'bulk-499': same hash as key 'bulk-3'"),
    ]


@pytest.mark.parametrize(("mutate", "message"), [(m, msg) for _, m, msg in _bad_key_cases()],
                         ids=[name for name, _, _ in _bad_key_cases()])
def test_one_bad_key_among_many_refuses_the_snapshot(mutate: Callable[[pb.Snapshot], None], message: str) -> None:
    snap = many_keys()
    assert len(Runtime.from_snapshot(snap, ENV).keys) == len(snap.keys)
    mutate(snap)
    with pytest.raises(InvalidSnapshot, match=re.escape(message)):
        Runtime.from_snapshot(snap, ENV)


OLD, OLDER = b"\xaa" * 32, b"\xbb" * 32


def test_a_rotated_out_secret_is_the_same_key_until_its_own_expiry() -> None:
    snap = many_keys(4)
    snap.keys[-1].expires_at = 5_000  # bulk-3 itself expires at 5000
    snap.retired_secrets.add(key_id="bulk-1", hash=OLD, expires_at=2_000)
    snap.retired_secrets.add(key_id="bulk-3", hash=OLDER, expires_at=9_000)
    rt = Runtime.from_snapshot(snap, ENV)
    current, old = rt.keys[(1).to_bytes(32, "big")], rt.keys[OLD]
    assert (old.id, old.hash, old.tenant, old.routes) == ("bulk-1", OLD, current.tenant, current.routes)
    assert (current.expires_at, old.expires_at) == (0, 2_000)
    assert not old.is_expired(1_999) and old.is_expired(2_000) and not current.is_expired(2_000)
    assert rt.keys[OLDER].expires_at == 5_000  # never outlives the key itself
    assert OLD in rt.keys and len(rt.keys) == len(snap.keys) and OLD not in set(rt.keys)


@pytest.mark.parametrize(("retired", "message"), [
    (pb.RetiredSecret(key_id="nobody", hash=OLD, expires_at=1), "retired secret of key 'nobody': no such key"),
    (pb.RetiredSecret(key_id="bulk-1", hash=b"\x01", expires_at=1), "hash is 1 bytes"),
    (pb.RetiredSecret(key_id="bulk-1", hash=(2).to_bytes(32, "big"), expires_at=1), "already another secret's"),
    (pb.RetiredSecret(key_id="bulk-1", hash=OLD, expires_at=0), "no expiry"),
], ids=["unknown key", "short hash", "hash of another key", "no expiry"])
def test_a_bad_retired_secret_refuses_the_snapshot(retired: pb.RetiredSecret, message: str) -> None:
    snap = many_keys(4)
    snap.retired_secrets.append(retired)
    with pytest.raises(InvalidSnapshot, match=re.escape(message)):
        Runtime.from_snapshot(snap, ENV)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: setattr(s.keys[-1], "id", "bulk-1"), "key 'bulk-1' appears twice"),
    (lambda s: setattr(s.keys[-1], "hash", s.keys[-3 * _STEP].hash), "same hash as key"),
    (lambda s: setattr(s.keys[-1], "tenant", "nobody"), "tenant 'nobody' does not exist"),
], ids=["duplicate id", "duplicate hash", "unknown tenant"])
def test_keys_are_one_table_across_the_steps_they_are_checked_in(mutate: Callable[[pb.Snapshot], None],
                                                                  message: str) -> None:
    # The key columns are indexed and checked a few thousand at a time (each step one short C call, so a runtime
    # built off the loop never holds the GIL long); a duplicate in another step is still a duplicate.
    snap = many_keys(3 * _STEP + 5)
    rt = Runtime.from_snapshot(snap, ENV)
    for i in (0, _STEP - 1, _STEP, 2 * _STEP + 1, 3 * _STEP + 4):
        key = rt.keys[i.to_bytes(32, "big")]
        assert key.id == f"bulk-{i}" and key.tenant.name == ("acme" if i % 2 else "globex")
    mutate(snap)
    with pytest.raises(InvalidSnapshot, match=re.escape(message)):
        Runtime.from_snapshot(snap, ENV)
