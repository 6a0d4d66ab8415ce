"""The audit log: the hash chain over history entries, verified by the control plane and shown by gatectl."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from controlplane.policy.audit import GENESIS, Chain, RawEntry, entry_hash, seal, verify
from controlplane.store.layout import GENERATION, history_key
from tests.compliance.helpers import cli_env, control_plane, run, write_yaml
from tests.core.policy_docs import model, provider, route, tenant


def entry(revision: int, who: str = "alice") -> dict[str, Any]:
    return {"revision": revision, "time": f"2025-01-0{revision}T00:00:00.000Z", "who": who,
            "changes": [{"op": "create", "kind": "Tenant", "name": f"t{revision}", "before": None,
                         "after": {"n": revision}}]}


def sealed_chain(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for revision in range(1, n + 1):
        e = seal(entry(revision), prev)
        out.append(e)
        prev = e["hash"]
    return out


def chain_of(entries: Sequence[dict[str, Any] | None], generation: int | None = None,
             head: str | None = "auto") -> Chain:
    raws = tuple(RawEntry(i, orjson.dumps(e)) for i, e in enumerate(entries, start=1) if e is not None)
    last = next((e for e in reversed(entries) if e is not None), None)
    return Chain(raws, len(entries) if generation is None else generation,
                 (last["hash"] if last and "hash" in last else None) if head == "auto" else head)


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    entries = sealed_chain(4)
    result = verify(chain_of(entries))
    assert result.ok and result.entries == 4 and result.head == entries[-1]["hash"]
    assert entries[0]["prev"] == GENESIS and entries[1]["prev"] == entries[0]["hash"]
    assert verify(Chain((), 0, None)).ok


def _edit(e: dict[str, Any]) -> dict[str, Any]:
    return {**e, "who": "mallory"}


def _edit_and_rehash(e: dict[str, Any]) -> dict[str, Any]:
    edited = _edit(e)
    edited["hash"] = entry_hash(edited)
    return edited


@pytest.mark.parametrize(("tamper", "revision", "words"), [
    (lambda es: es.__setitem__(1, _edit(es[1])), 2, "revision 2 was altered"),
    (lambda es: es.__setitem__(1, _edit_and_rehash(es[1])), 3, "does not chain to revision 2"),
    (lambda es: es.__setitem__(0, _edit_and_rehash(es[0])), 2, "does not chain to revision 1"),
    (lambda es: es.__setitem__(1, None), 2, "revision 2 is missing"),
    (lambda es: es.__setitem__(3, None), 4, "revision 4 is missing"),
    (lambda es: es.__setitem__(3, _edit_and_rehash(es[3])), 4, "newest"),
    (lambda es: es.__setitem__(2, {k: v for k, v in es[2].items() if k not in ("hash", "prev")}), 3, "no hash"),
    (lambda es: es.__setitem__(2, {**es[2], "revision": 7}), 3, "claims to be revision 7"),
])
def test_every_kind_of_tampering_names_the_first_bad_revision(tamper: Any, revision: int, words: str) -> None:
    entries: list[dict[str, Any] | None] = list(sealed_chain(4))
    head = entries[-1]["hash"]  # type: ignore[index]
    tamper(entries)
    result = verify(chain_of(entries, generation=4, head=head))
    assert result.broken is not None, words
    assert (result.broken.revision, words in result.broken.reason) == (revision, True), result.broken


def test_unsealed_entries_are_accepted_only_before_the_chain_starts() -> None:
    legacy = [entry(1), entry(2)]
    third = seal(entry(3), entry_hash(legacy[1]))
    result = verify(chain_of([*legacy, third]))
    assert result.ok and result.unchained == 2
    assert not verify(chain_of([*legacy, third], head=None)).ok  # a sealed log must have a head


def policy_files(tmp_path: Path, attempts: int) -> Path:
    return write_yaml(tmp_path / "policy.yaml", provider("p-eu", "eu", type_="mock"), model("m", "p-eu"),
                      route("chat", "m", failover={"attempts": attempts}), tenant("acme", "eu"))


async def test_gatectl_audit_lists_changes_and_detects_an_entry_edited_in_the_store(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as (cp, store):
        env = cli_env(tmp_path, cp)
        for attempts in (2, 3):
            applied = await run(env, "apply", "-f", str(policy_files(tmp_path, attempts)))
            assert applied.returncode == 0, applied.stderr
        deleted = await run(env, "delete", "tenant", "acme", "--as", "bob")
        assert deleted.returncode == 0, deleted.stderr

        listed = await run(env, "audit")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["REVISION", "TIME", "WHO", "CHANGES"]
        assert lines[1].split()[0::2][:2] == ["3", "bob"] and "Tenant/acme deleted" in lines[1]
        assert lines[2].startswith("2 ") and "Route/chat updated" in lines[2] and "tester" in lines[2]
        assert lines[3].startswith("1 ") and "Route/chat created" in lines[3] and "(4 changes)" in lines[3]

        diffed = await run(env, "audit", "--diff", "--limit", "2")
        assert diffed.returncode == 0, diffed.stderr
        assert '-      "attempts": 2,' in diffed.stdout and '+      "attempts": 3,' in diffed.stdout
        assert "revision 1" not in diffed.stdout

        as_json = json.loads((await run(env, "audit", "-o", "json")).stdout)
        assert [i["revision"] for i in as_json["items"]] == [3, 2, 1]
        assert as_json["items"][1]["changes"] == [
            {"op": "update", "kind": "Route", "name": "chat", "diff": as_json["items"][1]["changes"][0]["diff"]}]
        assert as_json["verification"]["ok"] is True

        verified = await run(env, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        head = as_json["verification"]["head"]
        assert verified.stdout.strip() == f"audit chain intact: 3 entries, head {head}"

        # Someone with store access rewrites who made revision 2.
        kv = await store.get(history_key(2))
        assert kv is not None
        forged = orjson.loads(kv.value) | {"who": "mallory"}
        await store.txn([], puts=[(history_key(2), orjson.dumps(forged))])

        broken = await run(env, "audit", "verify")
        assert broken.returncode == 1
        assert ("error: audit chain broken at revision 2: revision 2 was altered after it was written"
                in broken.stderr)
        listing = await run(env, "audit")
        assert listing.returncode == 1 and "mallory" in listing.stdout  # still shown, but flagged
        assert "audit chain broken at revision 2" in listing.stderr


async def test_a_consistently_rewritten_log_is_caught_by_a_recorded_head(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as (cp, store):
        env = cli_env(tmp_path, cp)
        for attempts in (2, 3):
            assert (await run(env, "apply", "-f", str(policy_files(tmp_path, attempts)))).returncode == 0
        recorded = json.loads((await run(env, "audit", "verify", "-o", "json")).stdout)["verification"]["head"]
        assert (await run(env, "audit", "verify", "--expect", recorded)).returncode == 0

        # Rewrite every entry and the head, recomputing every hash: the chain itself is consistent again.
        prev = GENESIS
        puts = []
        for revision in (1, 2):
            kv = await store.get(history_key(revision))
            assert kv is not None
            e = seal({k: v for k, v in orjson.loads(kv.value).items() if k not in ("hash", "prev")}
                     | {"who": "mallory"}, prev)
            puts.append((history_key(revision), orjson.dumps(e)))
            prev = e["hash"]
        puts.append((GENERATION, orjson.dumps({"generation": 2, "head": prev})))
        await store.txn([], puts=puts)

        assert (await run(env, "audit", "verify")).returncode == 0
        caught = await run(env, "audit", "verify", "--expect", recorded)
        assert caught.returncode == 1
        assert f"the recorded head {recorded} is not in the audit chain" in caught.stderr

        # And the next apply chains onto the rewritten head (the log stays verifiable from here on).
        assert (await run(env, "apply", "-f", str(policy_files(tmp_path, 4)))).returncode == 0
        assert (await run(env, "audit", "verify")).returncode == 0
