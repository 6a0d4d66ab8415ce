"""Staged rollouts end to end: a real control plane (on the parametrized store), three real data planes in two
regions (eu: dp-eu-1, dp-eu-2; us: dp-us-1) talking real gRPC, requests sent to the data planes over HTTP.
Rollouts are started, watched, promoted and aborted with ``gatectl`` as a subprocess, as a user or CI does
(``apply --canary``, ``rollout status|promote|abort``, ``history``, ``audit``), and through the admin HTTP API
where the test needs the JSON.

What is asserted is what an operator sees: the version each data plane runs, the rollout status, the history and
the audit chain, the answers a client gets, and the messages and exit codes of refused commands.

The fleet and what the tests send and read through it are ``fleet_world``'s.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.core.policy_docs import api_key
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV
from tests.fakes.openai_upstream import fake_openai
from tests.rollout.fleet_world import (
    NODES,
    Fleet,
    audit_verifies,
    base_policy,
    chat,
    documents,
    failing_change,
    history,
    running_fleet,
    send_until,
    wait_async,
)


@pytest.fixture
async def fleet(store: Store, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with running_fleet(store, tmp_path) as f:
        yield f


async def test_canary_acks_others_keep_the_old_version_then_promote(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    assert before["dp-eu-1"] == before["dp-eu-2"] != before["dp-us-1"]
    status, created = await fleet.admin("POST", "/admin/v1/keys", {"name": "ci", "tenant": "acme", "who": "alice"})
    assert status == 201
    before = await fleet.settled("key everywhere", lambda v: v != before)
    for node in NODES:
        assert await chat(fleet.dps[node], created["secret"]) == 200

    started = await fleet.gatectl("apply", "-f", fleet.policy_dir(base_policy(price="3")), "--canary", "eu",
                                  "--as", "ci-bot")
    assert started.returncode == 0, started.stderr
    shown = await fleet.status()
    rollout_id, target = shown["rollout"]["id"], shown["rollout"]["targetRevision"]
    assert f"rollout {rollout_id} started: revision {target} goes to the canary (eu) only; the others keep " \
           f"revision {target - 1}" in started.stdout
    assert "Model/small-eu configured" in started.stdout
    during = await fleet.settled("canary on the new version", lambda v: v["dp-eu-1"] != before["dp-eu-1"])
    assert during["dp-eu-2"] == during["dp-eu-1"]  # the whole canary region
    assert during["dp-us-1"] == before["dp-us-1"]  # the others keep the old one
    shown = await fleet.status()
    assert shown["rollout"]["who"] == "ci-bot" and shown["rollout"]["canary"]["regions"] == ["eu"]
    rows = {r["nodeId"]: r for r in shown["dataplanes"]}
    assert rows["dp-eu-1"]["canary"] and rows["dp-eu-2"]["canary"] and not rows["dp-us-1"]["canary"]
    assert {r["status"] for r in rows.values()} == {"ACK"}

    # Policy applied during the rollout is refused, naming it; nothing is mixed in.
    refused = await fleet.gatectl("apply", "-f", fleet.policy_dir(base_policy(price="5")))
    assert refused.returncode == 3, refused.stderr
    assert f"rollout {rollout_id} (generation {target} on the canary region eu, started by ci-bot" in refused.stderr
    assert "nothing was written" in refused.stderr and "gatectl rollout promote" in refused.stderr
    for path, body in (("/admin/v1/keys", {"name": "other", "tenant": "acme"}),
                       ("/admin/v1/rollback", {"toRevision": 1}),
                       ("/admin/v1/rollout", {"documents": documents(base_policy(price="5")), "canary": "us"})):
        status, answer = await fleet.admin("POST", path, body)
        assert status == 409 and answer["error"]["type"] == "rollout_in_progress", (path, answer)
        assert rollout_id in answer["error"]["message"]
    assert fleet.versions() == during

    # A rotation and a revocation go through at once, to the canary and to the others.
    rotated = await fleet.gatectl("keys", "rotate", "ci", "--quiet", "--as", "alice")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip()
    after_rotation = await fleet.settled("rotation everywhere", lambda v: all(v[n] != during[n] for n in NODES))
    for node in NODES:
        assert await chat(fleet.dps[node], new_secret) == 200, node
        assert await chat(fleet.dps[node], created["secret"]) == 401, node
    status, _ = await fleet.admin("POST", "/admin/v1/keys/ci/revoke", {"who": "alice"})
    assert status == 200
    revoked = await fleet.settled("revocation everywhere", lambda v: all(v[n] != after_rotation[n] for n in NODES))
    for node in NODES:
        assert await chat(fleet.dps[node], new_secret) == 401, node
    assert (await fleet.status())["rollout"]["id"] == rollout_id  # still in progress, still split
    assert revoked["dp-eu-1"] == revoked["dp-eu-2"] != revoked["dp-us-1"]

    # What a user runs: gatectl rollout status, then promote.
    shown_cli = await fleet.gatectl("rollout", "status")
    assert shown_cli.returncode == 0, shown_cli.stderr
    assert f"rollout {rollout_id}: revision {target} on the canary (region eu), revision {target - 1} elsewhere; " \
           "started by ci-bot" in shown_cli.stdout
    lines = shown_cli.stdout.splitlines()
    for node, canary in (("dp-eu-1", "yes"), ("dp-eu-2", "yes"), ("dp-us-1", "no")):
        row = next(line.split() for line in lines if line.startswith(node + " "))
        assert row == [node, NODES[node], canary, revoked[node], revoked[node], "ACK", "yes"], row
    promoted = await fleet.gatectl("rollout", "promote", "--as", "carol", "--reason", "dashboards look fine")
    assert promoted.returncode == 0, promoted.stderr
    assert f"rollout {rollout_id} promoted: every data plane now gets revision {target}" in promoted.stdout
    after = await fleet.settled("promoted everywhere", lambda v: v["dp-us-1"] != revoked["dp-us-1"])
    assert after["dp-eu-1"] == revoked["dp-eu-1"]  # the canary already ran it
    assert (await fleet.status())["rollout"] is None

    entries = await history(fleet)
    actions = [(e.get("action"), e["who"]) for e in entries[:4]]
    assert actions == [("rollout-promote", "carol"), ("revoke", "alice"), ("rotate", "alice"),
                       ("rollout-start", "ci-bot")]
    assert entries[0]["rollout"]["id"] == rollout_id and entries[0]["rollout"]["reason"] == "dashboards look fine"
    versions = entries[0]["rollout"]["versions"]  # per region, what the canary and the others ran until then
    assert versions["eu"]["canary"] == revoked["dp-eu-1"] and versions["us"] == {
        "canary": after["dp-us-1"], "others": revoked["dp-us-1"]}
    shown_history = await fleet.gatectl("history")
    assert shown_history.returncode == 0, shown_history.stderr
    assert f"rollout-promote {rollout_id} (canary eu): revision {target} everywhere (eu {after['dp-eu-1']}, " \
           f"us {after['dp-us-1']}): dashboards look fine" in shown_history.stdout
    assert f"rollout-start {rollout_id} (canary eu): revision {target} to the canary, {target - 1} elsewhere; " \
           "update Model/small-eu" in shown_history.stdout
    audited = await audit_verifies(fleet)
    assert [(e.get("action"), e["who"]) for e in audited[:4]] == actions
    shown_audit = await fleet.gatectl("audit")  # exit 0: the chain is intact
    assert shown_audit.returncode == 0 and f"rollout-promote {rollout_id} (canary eu)" in shown_audit.stdout
    assert (await fleet.admin("POST", "/admin/v1/rollout/promote", {}))[0] == 404  # nothing left to promote


async def test_a_nack_from_the_canary_aborts(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    # Valid policy, but the eu data planes refuse a snapshot in which two keys share a hash: a real NACK.
    broken = [*base_policy(price="2"), api_key("one", "euro", digest="ee" * 32),
              api_key("two", "euro", digest="ee" * 32)]
    started = await fleet.start_rollout(broken, "eu")
    rollout_id = started["rollout"]["id"]

    async def aborted() -> bool:
        return (await fleet.status())["rollout"] is None
    await wait_async(aborted, "automatic abort")
    entries = await history(fleet)
    assert entries[0]["action"] == "rollout-abort" and entries[0]["who"] == "control-plane"
    assert "rejected the snapshot" in entries[0]["rollout"]["reason"] and "same hash" in entries[0]["rollout"]["reason"]
    assert entries[0]["rollout"]["id"] == rollout_id
    assert {c["name"] for c in entries[0]["changes"]} >= {"one", "two", "small-eu"}  # the base restored
    after = await fleet.settled("everyone back on the base policy")
    assert after == before  # the canary never ran the refused one; the others never saw it
    audited = await audit_verifies(fleet)
    assert audited[0]["action"] == "rollout-abort" and audited[1]["action"] == "rollout-start"



async def test_the_canary_error_rate_and_latency_a_manual_abort_and_an_automatic_one(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    fleet = Fleet(store, tmp_path, rollout_min_requests=8, rollout_window_seconds=120.0)
    async with fake_openai(CREDENTIAL) as upstream, AsyncExitStack() as stack:
        await fleet.start_control_plane()
        stack.push_async_callback(fleet.stop_control_plane)
        await fleet.apply(base_policy())
        await fleet.start_data_planes()
        stack.push_async_callback(fleet.stop_data_planes)
        without_key = await fleet.settled("base policy everywhere")
        # Tenants that stay in their region, so a canary request cannot fail over to the other one.
        secrets = {}
        for name, owner in (("eu-app", "euro"), ("us-app", "amer")):
            status, created = await fleet.admin("POST", "/admin/v1/keys", {"name": name, "tenant": owner})
            assert status == 201
            secrets[name] = created["secret"]
        key_of = {"dp-eu-1": secrets["eu-app"], "dp-eu-2": secrets["eu-app"], "dp-us-1": secrets["us-app"]}
        before = await fleet.settled("the key everywhere", lambda v: all(v[n] != without_key[n] for n in NODES))

        # By hand: the canary fails 3 rounds, then answers 0.15 s late; status shows both, and a human aborts.
        upstream.fail_status, upstream.fail_times, upstream.delay_s = 500, 6, 0.15
        started = await fleet.gatectl("apply", "-f", fleet.policy_dir(failing_change(upstream)), "--canary", "eu")
        assert started.returncode == 0, started.stderr
        rollout_id = (await fleet.status())["rollout"]["id"]
        await fleet.settled("canary on the new version", lambda v: v["dp-eu-1"] != before["dp-eu-1"])
        seen = await send_until(fleet, key_of, lambda s: s["traffic"]["canary"]["requests"] >= 10
                                and s["traffic"]["canary"]["p50LatencyMs"] is not None
                                and s["traffic"]["others"]["requests"] >= 5, "the canary's traffic recorded")
        assert all(codes[2] == 200 for codes in seen) and any(codes[0] >= 500 for codes in seen)
        traffic = (await fleet.status())["traffic"]
        assert traffic["canary"]["errors"] == 6 and traffic["others"]["errors"] == 0
        assert traffic["addedErrorRate"] == traffic["canary"]["errorRate"] > 0.1
        assert traffic["addedLatencyMs"] >= 120  # 0.15 s upstream against the mock's instant answers
        shown = await fleet.gatectl("rollout", "status")
        assert shown.returncode == 0, shown.stderr
        found = re.search(r"last 120s: canary (\d+) requests, error rate (\d+\.\d)%; others (\d+) requests, "
                          r"error rate 0\.0%; added latency \(p50\) \+(\d+) ms", shown.stdout)
        assert found is not None, shown.stdout
        assert int(found[1]) >= 10 and float(found[2]) > 10 and int(found[3]) >= 5 and int(found[4]) >= 120
        aborted = await fleet.gatectl("rollout", "abort", "--reason", "errors and latency", "--as", "dave")
        assert aborted.returncode == 0, aborted.stderr
        assert f"rollout {rollout_id} aborted: the canary returns to the policy of revision" in aborted.stdout
        back = await fleet.settled("the canary back", lambda v: v["dp-eu-1"] == before["dp-eu-1"])
        assert back == before  # exactly the version of before; the others were never sent anything
        entries = await history(fleet)
        assert (entries[0]["action"], entries[0]["who"], entries[0]["rollout"]["reason"]) == \
            ("rollout-abort", "dave", "errors and latency")
        assert {c["name"] for c in entries[0]["changes"]} == {"openai-eu", "small-eu"}

        # Automatically: the same change, failing, with --abort-if; the errors of the first rollout's window are
        # not this one's (the window starts with the rollout).
        upstream.fail_times, upstream.delay_s = 1_000_000, 0.0
        started = await fleet.gatectl("apply", "-f", fleet.policy_dir(failing_change(upstream)), "--canary", "eu",
                                      "--abort-if", "error-rate>2%")
        assert started.returncode == 0, started.stderr
        shown_now = await fleet.status()
        assert shown_now["traffic"]["canary"]["requests"] == 0  # the window starts with this rollout
        assert shown_now["rollout"]["abortIfErrorRateAbove"] == 0.02
        await fleet.settled("canary on the new version", lambda v: v["dp-eu-1"] != before["dp-eu-1"])
        seen = await send_until(fleet, key_of, lambda s: s["rollout"] is None, "automatic abort on the error spike")
        assert seen and all(codes[0] >= 500 and codes[2] == 200 for codes in seen[:-1])  # canary failing, us fine
        entries = await history(fleet)
        assert entries[0]["action"] == "rollout-abort" and entries[0]["who"] == "control-plane"
        assert "canary error rate 100.0%" in entries[0]["rollout"]["reason"]
        assert "exceeds the others' 0.0% by more than 2.0%" in entries[0]["rollout"]["reason"]
        await fleet.settled("everyone back on the base policy", lambda v: v["dp-eu-1"] == before["dp-eu-1"])
        assert await chat(fleet.dps["dp-eu-1"], secrets["eu-app"]) == 200
        audited = await audit_verifies(fleet)
        assert [e.get("action") for e in audited[:4]] == ["rollout-abort", "rollout-start"] * 2


async def test_a_restarted_control_plane_resumes_the_rollout_and_its_deadline(fleet: Fleet) -> None:
    before = await fleet.settled("base policy everywhere")
    started = await fleet.gatectl("apply", "-f", fleet.policy_dir(base_policy(price="4")),
                                  "--canary", "dataplane=dp-eu-2", "--promote-after", "4s")
    assert started.returncode == 0, started.stderr
    during = await fleet.settled("one data plane on the new version", lambda v: v["dp-eu-2"] != before["dp-eu-2"])
    assert during["dp-eu-1"] == before["dp-eu-1"] and during["dp-us-1"] == before["dp-us-1"]

    await fleet.stop_control_plane()
    await fleet.start_control_plane()  # same store, same ports: the data planes reconnect
    resumed = await fleet.settled("reconnected, still split")
    assert resumed == during
    assert (await fleet.status())["rollout"]["canary"]["dataplanes"] == ["dp-eu-2"]

    after = await fleet.settled("promoted by the deadline", lambda v: v["dp-us-1"] != before["dp-us-1"])
    assert after["dp-eu-1"] == after["dp-eu-2"] == during["dp-eu-2"]
    entries = await history(fleet)
    assert entries[0]["action"] == "rollout-promote" and entries[0]["who"] == "control-plane"
    assert entries[0]["rollout"]["reason"] == "the canary period ended without an abort condition"
    audited = await audit_verifies(fleet)
    assert audited[0]["action"] == "rollout-promote" and audited[0]["who"] == "control-plane"


@pytest.fixture
async def embedded_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The fleet on the embedded store only, for what does not depend on the store."""
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        async with running_fleet(store, tmp_path) as f:
            await f.settled("base policy everywhere")
            yield f
    finally:
        await store.close()


async def test_bad_rollout_input_is_refused_naming_the_option_and_nothing_is_written(embedded_fleet: Fleet) -> None:
    fleet = embedded_fleet
    folder = fleet.policy_dir(base_policy(price="7"))
    for args, message in (
            (["--canary", "zone=eu"], "error: --canary: 'zone=eu' is not REGION, region=REGION or dataplane=NAME"),
            (["--canary", "eu", "--promote-after", "10 minutes"],
             "error: --promote-after: '10 minutes' is not a duration such as 90s, 10m or 2h"),
            (["--canary", "eu", "--abort-if", "latency>2%"], "error: --abort-if: 'latency>2%' is not a rule such as "
                                                             "error-rate>2%"),
            (["--promote-after", "10m"], "error: --promote-after and --abort-if need --canary")):
        refused = await fleet.gatectl("apply", "-f", folder, *args)
        assert (refused.returncode, refused.stderr.strip()) == (2, message), refused.stderr
    for canary, message in (("eur", "no connected data plane runs in region 'eur' (connected regions: eu, us)"),
                            ("eu,dataplane=dp-eu-9", "no data plane 'dp-eu-9' is connected")):
        refused = await fleet.gatectl("apply", "-f", folder, "--canary", canary)
        assert refused.returncode == 3 and message in refused.stderr and "nothing was written" in refused.stderr, \
            refused.stderr
    status, answer = await fleet.admin("POST", "/admin/v1/rollout", {"documents": [], "canary": "eu",
                                                                      "promoteAfter": "soon"})
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert "'promoteAfter': 'soon'" in answer["error"]["message"]
    assert len(await history(fleet)) == 1 and (await fleet.status())["rollout"] is None
    for action in ("promote", "abort"):
        nothing = await fleet.gatectl("rollout", action)
        assert (nothing.returncode, nothing.stderr.strip()) == (3, "error: no rollout is in progress"), nothing.stderr
