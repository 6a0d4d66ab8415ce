"""Deployment health travels from the data plane to ``gatectl providers``, and heartbeats are not ACKs.

A real control plane and a real data plane on loopback, two fake OpenAI upstreams (``eu1`` first, ``eu2`` its
failover), and ``gatectl`` run as a subprocess the way an operator runs it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import openai
import pytest

from controlplane.server import ControlPlane
from controlplane.store.base import Store
from controlplane.store.open import open_store
from dataplane.core.health import HealthSettings
from dataplane.serve import DataPlane
from tests.cli.gatectl_process import base_env, gatectl
from tests.core.policy_docs import api_key, model, provider, route, tenant
from tests.discovery.conftest import (
    ADMIN_TOKEN,
    DP_TOKEN,
    FAST,
    admin_dataplanes,
    dataplane_record,
    dp_settings,
    put,
    running_control_plane,
)
from tests.routing.world import CREDENTIAL_ENV, UPSTREAM_KEY, Upstream
from tollway.grpc_options import CLIENT_OPTIONS
from tollway.keyformat import generate_key, hash_key
from tollway.pb import discovery_pb2 as dpb
from tollway.pb import discovery_pb2_grpc as dgrpc

HEARTBEAT_S = 0.2


def policy(key: str, eu1: Upstream, eu2: Upstream) -> list[dict[str, Any]]:
    credential = {"env": CREDENTIAL_ENV}
    timeouts = {"connectSeconds": 0.5, "readSeconds": 2}
    return [
        provider("eu1", "eu", base_url=eu1.base_url, credential=credential, timeouts=timeouts),
        provider("eu2", "eu", base_url=eu2.base_url, credential=credential, timeouts=timeouts),
        model("gpt-eu1", "eu1"), model("gpt-eu2", "eu2"),
        route("chat", "gpt-eu1", "gpt-eu2", strategy="priority",
              failover={"attempts": 2, "attemptTimeoutSeconds": 2, "totalTimeoutSeconds": 4}),
        tenant("acme", "eu", projects=("web",)),
        api_key("acme-key", "acme", digest=hash_key(key).hex()),
    ]


@pytest.fixture
async def embedded_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    eu1, eu2 = Upstream("eu1"), Upstream("eu2")
    await eu1.start()
    await eu2.start()
    try:
        yield eu1, eu2
    finally:
        await eu1.kill()
        await eu2.kill()


@asynccontextmanager
async def fleet(store: Store, tmp_path: Path, key: str, eu1: Upstream, eu2: Upstream, *, check_interval_s: float,
                health: HealthSettings | None = None) -> AsyncIterator[tuple[ControlPlane, DataPlane]]:
    await put(store, *policy(key, eu1, eu2))
    async with running_control_plane(store, tmp_path / "cp") as cp:
        dp = DataPlane(dp_settings(cp.grpc_target, tmp_path / "dp", heartbeat_interval_s=HEARTBEAT_S),
                       backoff=FAST, health_check_interval_s=check_interval_s)
        if health is not None:
            dp.health.settings = health
        await dp.start()
        try:
            await dataplane_record(cp, lambda r: r["status"] == "ACK" and len(r["health"]) == 2)
            yield cp, dp
        finally:
            await dp.stop()


async def ask(dp: DataPlane, key: str) -> str:
    client = openai.AsyncOpenAI(base_url=dp.url + "/v1", api_key=key, max_retries=0, timeout=10)
    async with client:
        answer = await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    return answer.model


def request(**fields: Any) -> dpb.DiscoveryRequest:
    """A request of the raw data plane ``dp-raw`` in region eu."""
    return dpb.DiscoveryRequest(node_id="dp-raw", region="eu", **fields)


def states(records: list[dict[str, Any]]) -> dict[str, str]:
    assert len(records) == 1
    return {h["deployment"]: h["state"] for h in records[0]["health"]}


async def until_states(cp: ControlPlane, check: Callable[[dict[str, str]], bool], *, within: float = 10.0,
                       between: Callable[[], Any] | None = None) -> dict[str, str]:
    """The admin API's health of the only data plane once ``check`` holds (calling ``between`` meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        seen = states(await admin_dataplanes(cp))
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"health never matched; last seen {seen}")
        if between is not None:
            await between()
        await asyncio.sleep(0.05)


async def run_gatectl(cp: ControlPlane, tmp_path: Path, *args: str) -> str:
    done = await asyncio.to_thread(gatectl, "providers", *args, "--control-plane", cp.admin_url,
                                   "--admin-token", ADMIN_TOKEN, env=base_env(tmp_path))
    assert done.returncode == 0, done.stderr
    return done.stdout


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Rows of ``gatectl providers`` by deployment (columns split on runs of 3+ spaces)."""
    lines = stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].split("   ") if c.strip()]
    assert header == ["PROVIDER", "DEPLOYMENT", "DATA PLANE", "REGION", "STATE", "EJECTIONS", "TTFB", "SINCE",
                      "REASON"]
    rows = [[c.strip() for c in line.split("   ") if c.strip()] for line in lines[1:]]
    return {row[1]: row for row in rows}


async def test_killed_upstream_shows_down_and_returns_healthy(
    embedded_store: Store, upstreams: tuple[Upstream, Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    eu1, eu2 = upstreams
    key = generate_key()
    async with fleet(embedded_store, tmp_path, key, eu1, eu2, check_interval_s=0.2) as (cp, dp):
        await ask(dp, key)
        assert eu1.served == 1
        first_seen = (await admin_dataplanes(cp))[0]["lastSeen"]

        await eu1.kill()
        for _ in range(3):  # failing over: the client sees no error
            await ask(dp, key)
        seen = await until_states(cp, lambda s: s["gpt-eu1"] == "provider-down")
        assert seen["gpt-eu2"] == "healthy"

        rows = table_rows(await run_gatectl(cp, tmp_path))
        assert rows["gpt-eu1"][:5] == ["eu1", "gpt-eu1", "dp-1", "eu", "provider-down"]
        assert rows["gpt-eu1"][7].endswith("s ago") and rows["gpt-eu1"][8] == "active check: connection refused"
        assert rows["gpt-eu2"][:5] == ["eu2", "gpt-eu2", "dp-1", "eu", "healthy"]
        assert rows["gpt-eu2"][7:] == ["-", "-"]  # healthy: no since, no reason
        assert rows["gpt-eu2"][6].endswith("ms")  # it served, so its time to first byte is known
        answer = json.loads(await run_gatectl(cp, tmp_path, "-o", "json"))
        worst = {i["deployment"]: i["state"] for i in answer["items"]}
        assert worst == {"gpt-eu1": "provider-down", "gpt-eu2": "healthy"}

        await eu1.start()
        served_before = eu1.served

        async def traffic() -> None:
            await ask(dp, key)

        await until_states(cp, lambda s: s == {"gpt-eu1": "healthy", "gpt-eu2": "healthy"}, between=traffic)
        assert eu1.served > served_before  # traffic came back to the first choice
        answer = json.loads(await run_gatectl(cp, tmp_path, "-o", "json"))
        assert {i["deployment"]: i["state"] for i in answer["items"]} == {"gpt-eu1": "healthy", "gpt-eu2": "healthy"}
        assert [d["nodeId"] for d in answer["items"][0]["dataplanes"]] == ["dp-1"]

        # Heartbeats keep the data plane's last-seen time moving while nothing else happens on the stream.
        await asyncio.sleep(1.1)
        record = (await admin_dataplanes(cp))[0]
        assert record["status"] == "ACK" and record["lastSeen"] > first_seen


async def test_failing_requests_eject_a_deployment(
    embedded_store: Store, upstreams: tuple[Upstream, Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    eu1, eu2 = upstreams
    key = generate_key()
    # No active checks: only the request path's failures can eject (for long enough to look at it).
    ejecting = HealthSettings(eject_after=3, base_ejection_s=60.0, max_ejection_s=60.0)
    async with fleet(embedded_store, tmp_path, key, eu1, eu2, check_interval_s=0, health=ejecting) as (cp, dp):
        await eu1.kill()
        for _ in range(3):  # failing over: the client sees no error
            await ask(dp, key)
        assert eu2.served == 3

        await until_states(cp, lambda s: s == {"gpt-eu1": "ejected", "gpt-eu2": "healthy"})
        rows = table_rows(await run_gatectl(cp, tmp_path))
        assert rows["gpt-eu1"][4:6] == ["ejected", "1"]
        assert rows["gpt-eu1"][8].startswith("provider 'eu1'"), rows  # the last error that counted
        assert rows["gpt-eu2"][4:6] == ["healthy", "0"]
        yaml_out = await run_gatectl(cp, tmp_path, "-o", "yaml")
        assert "deployment: gpt-eu1" in yaml_out and "state: ejected" in yaml_out

        await dp.stop()  # the last report stays visible, marked, but no longer counts
        answer = json.loads(await run_gatectl(cp, tmp_path, "-o", "json"))
        assert {i["state"] for i in answer["items"]} == {"unknown"}
        assert answer["items"][0]["dataplanes"][0]["connected"] is False
        rows = table_rows(await run_gatectl(cp, tmp_path))
        assert rows["gpt-eu1"][4] == "ejected (disconnected)"


async def test_heartbeat_is_neither_ack_nor_nack(embedded_store: Store, tmp_path: Path) -> None:
    await put(embedded_store, provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu"),
              route("chat", "small"), tenant("acme", "eu"))
    async with running_control_plane(embedded_store, tmp_path / "cp") as cp, \
            grpc.aio.insecure_channel(cp.grpc_target, options=CLIENT_OPTIONS) as channel:
        call = dgrpc.DiscoveryStub(channel).StreamSnapshots(metadata=(("authorization", f"Bearer {DP_TOKEN}"),))
        await call.write(request())
        response = await call.read()
        assert isinstance(response, dpb.DiscoveryResponse)
        version, nonce = response.snapshot.version, response.nonce
        sick = dpb.DeploymentHealth(deployment="small", provider="mock-eu", state="ejected", ejections=2)

        # Before any answer: a heartbeat echoing the hello leaves the response pending.
        await call.write(request(heartbeat=True, health=[sick]))
        record = await dataplane_record(cp, lambda r: r["health"] != [])
        assert record["status"] == "PENDING"

        await call.write(request(response_nonce=nonce, error="refused for the test"))
        record = await dataplane_record(cp, lambda r: r["status"] == "NACK")
        assert record["health"] == []

        # Same nonce, no error: as an answer it would be an ACK; as a heartbeat it changes nothing but health.
        await call.write(request(response_nonce=nonce, heartbeat=True, health=[sick]))
        record = await dataplane_record(cp, lambda r: r["health"] != [])
        assert record["status"] == "NACK" and record["error"] == "refused for the test" and record["version"] == ""
        assert record["health"] == [{"deployment": "small", "provider": "mock-eu", "state": "ejected",
                                     "consecutiveFailures": 0, "ejections": 2, "ejectedForS": 0.0, "ttfbMs": 0.0,
                                     "reason": "", "since": 0.0}]

        await call.write(request(version=version, response_nonce=nonce))
        record = await dataplane_record(cp, lambda r: r["status"] == "ACK")
        assert record["version"] == version and record["health"] == []  # every request carries the current health

        # A heartbeat never changes the version recorded, whatever it says.
        await call.write(request(version="not-a-version", response_nonce=nonce, heartbeat=True, health=[sick]))
        record = await dataplane_record(cp, lambda r: r["health"] != [])
        assert record["status"] == "ACK" and record["version"] == version
        call.cancel()


MISSING_ENV = "TOLLWAY_TEST_MISSING_PROVIDER_KEY"


async def healthz_deployments(dp: DataPlane) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{dp.url}/healthz/deployments") as resp:
        assert resp.status == 200
        return {d["deployment"]: d for d in (await resp.json())["deployments"]}


async def test_missing_credential_shows_at_once_with_its_source_and_is_never_routed_to(
    embedded_store: Store, upstreams: tuple[Upstream, Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    monkeypatch.delenv(MISSING_ENV, raising=False)
    eu1, eu2 = upstreams
    key = generate_key()
    timeouts = {"connectSeconds": 0.5, "readSeconds": 2}
    failover = {"attempts": 2, "attemptTimeoutSeconds": 2, "totalTimeoutSeconds": 4}
    await put(embedded_store,
              provider("eu1", "eu", base_url=eu1.base_url, credential={"env": MISSING_ENV}, timeouts=timeouts),
              provider("eu2", "eu", base_url=eu2.base_url, credential={"env": CREDENTIAL_ENV}, timeouts=timeouts),
              model("gpt-eu1", "eu1"), model("gpt-eu2", "eu2"),
              route("chat", "gpt-eu1", "gpt-eu2", strategy="priority", failover=failover),
              route("eu1-only", "gpt-eu1", failover=failover),
              tenant("acme", "eu", projects=("web",)), api_key("acme-key", "acme", digest=hash_key(key).hex()))
    async with running_control_plane(embedded_store, tmp_path / "cp") as cp:
        # Active checks every 0.2 s: eu1 answers its probe, which must not make it look healthy.
        dp = DataPlane(dp_settings(cp.grpc_target, tmp_path / "dp", heartbeat_interval_s=HEARTBEAT_S),
                       backoff=FAST, health_check_interval_s=0.2)
        await dp.start()
        try:
            # The very report that ACKs the snapshot already says so: no window in which it looks healthy.
            record = await dataplane_record(cp, lambda r: r["status"] == "ACK" and len(r["health"]) == 2)
            reported = {h["deployment"]: h for h in record["health"]}
            reason = f"environment variable {MISSING_ENV} is not set"
            assert reported["gpt-eu1"]["state"] == "no-credential"
            assert reported["gpt-eu1"]["reason"] == reason and reported["gpt-eu1"]["since"] > time.time() - 60
            assert reported["gpt-eu2"]["state"] == "healthy" and reported["gpt-eu2"]["reason"] == ""

            local = await healthz_deployments(dp)
            assert local["gpt-eu1"]["state"] == "no-credential" and local["gpt-eu1"]["reason"] == reason
            assert local["gpt-eu2"]["state"] == "healthy"

            # Routing: the first choice is skipped without an attempt; the client sees no error.
            await ask(dp, key)
            assert (eu1.served, eu2.served) == (0, 1)
            # A route with no other deployment: a clear refusal in OpenAI's format, not a 5xx.
            client = openai.AsyncOpenAI(base_url=dp.url + "/v1", api_key=key, max_retries=0, timeout=10)
            async with client:
                with pytest.raises(openai.PermissionDeniedError) as refused:
                    await client.chat.completions.create(model="eu1-only",
                                                         messages=[{"role": "user", "content": "hi"}])
            assert refused.value.status_code == 403
            assert refused.value.code == "no_credential"
            assert reason in refused.value.message and "gpt-eu1" in refused.value.message
            assert eu1.served == 0

            await asyncio.sleep(0.5)  # a few active checks later: still no credential, never healthy
            rows = table_rows(await run_gatectl(cp, tmp_path))
            assert rows["gpt-eu1"][4] == "no-credential"
            assert rows["gpt-eu1"][7].endswith("s ago") and rows["gpt-eu1"][8] == reason
            assert rows["gpt-eu2"][4] == "healthy"
            answer = json.loads(await run_gatectl(cp, tmp_path, "-o", "json"))
            assert {i["deployment"]: i["state"] for i in answer["items"]} == {"gpt-eu1": "no-credential",
                                                                             "gpt-eu2": "healthy"}
            assert UPSTREAM_KEY not in json.dumps(answer)
            wide = (await run_gatectl(cp, tmp_path, "-o", "wide")).splitlines()
            assert [c.strip() for c in wide[0].split("   ") if c.strip()][-3:] == ["FAILURES", "BACK-OFF", "REASON"]
            assert any(line.startswith("eu1 ") and line.endswith(reason) for line in wide[1:])
        finally:
            await dp.stop()
