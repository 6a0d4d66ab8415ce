"""The shortcuts of the request path decide exactly as the plain path: the memo of verified key checksums and
the banned-key walk that builds a path only for what it reports."""

from __future__ import annotations

import hashlib

import pytest

from dataplane.core.decide import authenticate
from dataplane.core.validate import find_banned_key
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Key, Runtime
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot

pytestmark = pytest.mark.pure

NOW = 2_000_000_000.0


@pytest.fixture(scope="module")
def world() -> tuple[Runtime, Keys]:
    snap, keys = build_snapshot()
    return Runtime.from_snapshot(snap, {CREDENTIAL_ENV: CREDENTIAL}), keys


def test_valid_key_is_remembered_and_accepted_again(world: tuple[Runtime, Keys]) -> None:
    rt, keys = world
    checked: set[bytes] = set()
    first = authenticate(rt, f"Bearer {keys.acme_all}", NOW, checked)
    assert isinstance(first, Key)
    assert checked == {hashlib.sha256(keys.acme_all.encode()).digest()}
    assert authenticate(rt, f"Bearer {keys.acme_all}", NOW, checked) == first


@pytest.mark.parametrize("secret", [
    "sk-nope",
    "tw_" + "0" * 49,  # right shape, wrong checksum
    "tw_" + "é" * 49,  # right length, not ASCII
    "tw_" + "0" * 48,
])
def test_malformed_or_unknown_keys_are_refused_and_never_remembered(world: tuple[Runtime, Keys],
                                                                     secret: str) -> None:
    rt, _ = world
    checked: set[bytes] = set()
    for _ in range(2):
        result = authenticate(rt, f"Bearer {secret}", NOW, checked)
        assert isinstance(result, ApiError) and result.status == 401 and result.code == "invalid_api_key"
    assert checked == set()


def test_expired_key_is_refused_even_when_remembered(world: tuple[Runtime, Keys]) -> None:
    rt, keys = world
    checked: set[bytes] = set()
    for _ in range(2):
        result = authenticate(rt, f"Bearer {keys.acme_expired}", NOW, checked)
        assert isinstance(result, ApiError) and result.message == "API key expired"


@pytest.mark.parametrize(("payload", "path"), [
    ({"model": "x", "messages": [{"role": "user", "content": "hi"}]}, None),
    ({"API_KEY": 1}, "API_KEY"),
    ({"a": [{"b": [[{"c": {"Base_Url": 1}}]]}]}, "a[0].b[0][0].c.Base_Url"),
    ({"": {"api_key": 1}}, "api_key"),
    ([{"x": 1}, {"proxy": 1}], "[1].proxy"),
    ({"tools": [{"parameters": {"properties": {"api_key": {"type": "string"}}}}]}, None),
    ({"tools": [{"parameters": {"properties": {"p": {"api_key": 1}}}}]}, "tools[0].parameters.properties.p.api_key"),
])
def test_banned_key_paths(payload: object, path: str | None) -> None:
    assert find_banned_key(payload) == path


def test_too_deep_is_reported_at_its_path() -> None:
    deep: object = 1
    for _ in range(70):
        deep = {"d": deep}
    found = find_banned_key(deep)
    assert found is not None and found == ".".join(["d"] * 65)
