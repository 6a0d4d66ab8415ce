from __future__ import annotations

import pytest

from tollway.keyformat import KEY_LEN, PREFIX, generate_key, hash_key, hint, is_well_formed

pytestmark = pytest.mark.pure


def test_generated_keys_are_well_formed_unique_and_long() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(PREFIX) and len(key) == KEY_LEN and is_well_formed(key)


@pytest.mark.parametrize("position", [3, 10, 45, KEY_LEN - 1])
def test_a_single_typo_fails_the_checksum(position: int) -> None:
    key = generate_key()
    typo = "A" if key[position] != "A" else "B"
    assert not is_well_formed(key[:position] + typo + key[position + 1 :])


@pytest.mark.parametrize("bad", ["", "sk-abc", "tw_" + "!" * (KEY_LEN - 3), generate_key()[:-1]])
def test_malformed_keys_are_refused(bad: str) -> None:
    assert not is_well_formed(bad)


def test_hash_and_hint_do_not_reveal_the_secret() -> None:
    key = generate_key()
    assert len(hash_key(key)) == 32
    assert hint(key) == f"tw_...{key[-4:]}"
    assert key[3:-4] not in hint(key)
