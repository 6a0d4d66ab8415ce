"""Alerts as an operator sees them: a real control plane (embedded store and etcd) and data plane, the openai SDK
sending requests, a webhook receiver on loopback that verifies every signature, and ``gatectl alerts`` run as a
subprocess.

A budget's soft threshold and its exhaustion, and a rate limit refusing past the (here shortened) threshold, each
reach the tenant's webhooks once, signed with the secret from the environment or a secret file, retried after the
receiver fails the first delivery with the same idempotency key and the same body; pending deliveries resume when
the control plane restarts. The control plane's metrics carry spend, limit and outstanding grants per tenant and
project budget, the data plane counts refusals by type, and no secret shows up in logs, answers or the store.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.server import ControlPlane
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.alerts.receiver import Receiver, webhook_receiver
from tests.budget.test_budget_fleet import ask
from tests.cli.gatectl_process import base_env, gatectl
from tests.core.policy_docs import doc, model, provider, route
from tests.discovery.conftest import ADMIN_TOKEN, dp_settings, eventually, running_control_plane, running_data_plane

OPS_SECRET = "whsec-ops-5f1d0c7a9b2e4c68"
FINANCE_SECRET = "whsec-finance-93ab11e0d7c24f5a"
SOFT, EXHAUSTED, REFUSING = "budget.soft_threshold", "budget.exhausted", "ratelimit.refusing"


async def setup_policy(store: Store, receiver: Receiver, secret_file: Path, **tenant_spec: Any) -> str:
    webhooks = [{"name": "ops", "url": f"{receiver.url}/ops"},
                {"name": "finance", "url": f"{receiver.url}/finance", "secretFile": str(secret_file),
                 "events": [EXHAUSTED]}]
    docs = [provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu", inp="1", out="2"),
            route("chat", "small"), doc("Tenant", "acme", regions=["eu"], alerts={"webhooks": webhooks}, **tenant_spec)]
    repo = Repository(store)
    await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
    return (await repo.create_key("acme-key", "acme", who="test", project="web")).secret


async def admin_get(cp: ControlPlane, path: str) -> Any:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as session, session.get(f"{cp.admin_url}{path}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return orjson.loads(await resp.read()) if resp.content_type == "application/json" else await resp.text()


async def alerts_when(cp: ControlPlane, check: Callable[[list[dict[str, Any]]], bool],
                      within: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        items: list[dict[str, Any]] = (await admin_get(cp, "/admin/v1/alerts"))["items"]
        if check(items):
            return items
        if time.monotonic() > deadline:
            pytest.fail(f"alerts never matched; last seen {items}")
        await asyncio.sleep(0.1)


def by_kind(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["kind"]: e for e in items}


def delivered(items: list[dict[str, Any]], *kinds: str) -> bool:
    found = by_kind(items)
    return all(k in found and found[k]["state"] == "delivered" for k in kinds)


def metric(text: str, name: str, **labels: str) -> float | None:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{re.escape(name)}{{{re.escape(inner)}}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


async def dp_metrics(dp: DataPlane) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{dp.url}/metrics") as resp:
        return await resp.text()


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (OPS_SECRET, FINANCE_SECRET):
            assert secret not in text


def first_grant(dp: DataPlane) -> bool:
    return dp.leases is not None and dp.leases.answers > 0 and dp.is_ready


async def test_budget_alerts_reach_the_webhooks_signed_retried_and_listed(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TOLLWAY_WEBHOOK_SECRET_OPS", OPS_SECRET)
    secret_file = tmp_path / "finance-secret"
    secret_file.write_text(FINANCE_SECRET + "\n")
    async with webhook_receiver({"ops": OPS_SECRET.encode(), "finance": FINANCE_SECRET.encode()}) as receiver:
        key = await setup_policy(store, receiver, secret_file, budget={"monthlyUsd": "0.0005", "softPercent": 50},
                                 projects=[{"name": "web", "budget": {"monthlyUsd": "1"}}])
        async with running_control_plane(store, tmp_path / "cp", webhook_retry_seconds=0.2) as cp, \
                running_data_plane(dp_settings(cp.grpc_target, tmp_path / "dp")) as dp:
            await eventually(lambda: first_grant(dp), what="a first grant")
            client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=key, max_retries=0)
            results = []
            for i in range(300):
                results.append(await ask(client, i))
                if results[-1] == "tenant_budget_exceeded":
                    break
            assert results[-1] == "tenant_budget_exceeded", results
            assert sum(1 for r in results if isinstance(r, int)) >= 3

            items = await alerts_when(cp, lambda items: delivered(items, SOFT, EXHAUSTED))
            events = by_kind(items)
            assert set(events) == {SOFT, EXHAUSTED}  # the project's $1 budget crossed nothing; each fired once
            for kind, e in events.items():
                assert (e["tenant"], e["project"], e["scope"]) == ("acme", "", "tenant/acme")
                assert e["details"]["limitUsd"] == "0.0005"
                hooks = {d["webhook"]: d for d in e["deliveries"]}
                assert set(hooks) == ({"ops", "finance"} if kind == EXHAUSTED else {"ops"})
                assert all(d["attempts"] == 2 and d["state"] == "delivered" for d in hooks.values()), hooks
                assert "answered 500" not in str(hooks)  # a delivered one keeps no error

            # The receiver: every delivery verified; the first failed (500), the retry carried the same id and body.
            assert receiver.bad_signatures == 0
            for kind, hook in ((SOFT, "ops"), (EXHAUSTED, "ops"), (EXHAUSTED, "finance")):
                got = receiver.of(kind, hook)
                assert [r.answered for r in got] == [500, 204], got
                assert got[0].event_id == got[1].event_id == events[kind]["id"]
                assert got[0].body == got[1].body
                assert got[0].event["scope"] == "tenant/acme" and got[0].event["kind"] == kind
            assert receiver.of(SOFT, "finance") == []  # finance subscribes to exhaustion only

            # Metrics: the control plane's per tenant and project budget, never per key or user.
            text = await admin_get(cp, "/metrics")
            spend = metric(text, "tollway_budget_spend_usd", tenant="acme", project="")
            assert spend is not None and 0.00025 <= spend <= 0.0005
            assert metric(text, "tollway_budget_limit_usd", tenant="acme", project="") == 0.0005
            assert metric(text, "tollway_budget_limit_usd", tenant="acme", project="web") == 1.0
            assert metric(text, "tollway_budget_spend_usd", tenant="acme", project="web") == spend
            outstanding = metric(text, "tollway_budget_outstanding_usd", tenant="acme", project="")
            assert outstanding is not None and 0 <= outstanding <= 0.0005 - spend + 1e-12
            assert len(re.findall(r"^tollway_budget_spend_usd\{", text, re.M)) == 2
            assert metric(text, "tollway_alert_events_total", kind=SOFT) == 1
            assert metric(text, "tollway_webhook_attempts_total", result="delivered") == 3
            dp_text = await dp_metrics(dp)
            refused = metric(dp_text, "tollway_refusals_total", status="429", type="insufficient_quota",
                             code="tenant_budget_exceeded")
            assert refused is not None and refused >= 1

            # gatectl alerts, as the operator runs it.
            env = base_env(tmp_path)
            shown = await asyncio.to_thread(gatectl, "alerts", "--control-plane", cp.admin_url, "--admin-token",
                                            ADMIN_TOKEN, env=env)
            assert shown.returncode == 0, shown.stderr
            lines = shown.stdout.splitlines()
            assert lines[0].split() == ["TIME", "KIND", "TENANT", "PROJECT", "SCOPE", "STATE", "ATTEMPTS", "ID"]
            rows = {line.split()[1]: line.split() for line in lines[1:]}
            assert rows[EXHAUSTED][2:7] == ["acme", "-", "tenant/acme", "delivered", "4"]
            assert rows[SOFT][2:7] == ["acme", "-", "tenant/acme", "delivered", "2"]
            as_json = await asyncio.to_thread(gatectl, "alerts", "--kind", SOFT, "-o", "json", "--control-plane",
                                              cp.admin_url, "--admin-token", ADMIN_TOKEN, env=env)
            assert [e["kind"] for e in orjson.loads(as_json.stdout)["items"]] == [SOFT]
            bad = await asyncio.to_thread(gatectl, "alerts", "--state", "lost", "--control-plane", cp.admin_url,
                                          "--admin-token", ADMIN_TOKEN, env=env)
            assert bad.returncode == 3 and "'state' must be one of" in bad.stderr

            listing = await store.list("/tollway/")
            assert_no_secret(caplog.text, shown.stdout, shown.stderr, as_json.stdout, text, dp_text, str(items),
                             *(kv.value.decode(errors="replace") for kv in listing.items))


async def test_a_rate_limit_refusing_past_the_threshold_alerts_once(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TOLLWAY_WEBHOOK_SECRET_OPS", OPS_SECRET)
    secret_file = tmp_path / "finance-secret"
    secret_file.write_text(FINANCE_SECRET)
    async with webhook_receiver({"ops": OPS_SECRET.encode(), "finance": FINANCE_SECRET.encode()}) as receiver:
        key = await setup_policy(store, receiver, secret_file, rateLimits={"requestsPerMinute": 3},
                                 projects=[{"name": "web"}])
        async with running_control_plane(store, tmp_path / "cp", alert_refusing_seconds=2.0,
                                         webhook_retry_seconds=0.2) as cp, \
                running_data_plane(dp_settings(cp.grpc_target, tmp_path / "dp")) as dp:
            await eventually(lambda: dp.is_ready, what="the data plane")
            client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=key, max_retries=0)
            results: list[int | str] = []
            started = time.monotonic()
            # Refused on and on: no alert before the threshold has passed, one after.
            while time.monotonic() - started < 20:
                results.append(await ask(client, len(results)))
                items = (await admin_get(cp, "/admin/v1/alerts"))["items"]
                if items:
                    break
                await asyncio.sleep(0.1)
            assert time.monotonic() - started >= 2.0
            assert results[:3] == [r for r in results[:3] if isinstance(r, int)] and "rate_limit_exceeded" in results
            items = await alerts_when(cp, lambda items: delivered(items, REFUSING))
            [event] = items
            assert (event["kind"], event["tenant"], event["scope"], event["period"]) == (REFUSING, "acme",
                                                                                       "tenant/acme", "")
            assert event["details"]["refusingForS"] >= 2.0 and event["details"]["refusals"] >= 2
            assert [d["webhook"] for d in event["deliveries"]] == ["ops"]  # finance: budget exhaustion only
            got = receiver.of(REFUSING)
            assert [r.answered for r in got] == [500, 204] and got[0].event_id == got[1].event_id == event["id"]
            assert receiver.bad_signatures == 0

            for _ in range(10):  # still refusing: the same episode, no second event
                await ask(client, 0)
                await asyncio.sleep(0.1)
            assert len((await admin_get(cp, "/admin/v1/alerts"))["items"]) == 1
            dp_text = await dp_metrics(dp)
            refused = metric(dp_text, "tollway_refusals_total", status="429", type="rate_limit_error",
                             code="rate_limit_exceeded")
            assert refused is not None and refused >= 3
            assert_no_secret(caplog.text, str(items), dp_text)


async def test_pending_deliveries_resume_after_a_control_plane_restart(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_WEBHOOK_SECRET_OPS", OPS_SECRET)
    secret_file = tmp_path / "finance-secret"
    secret_file.write_text(FINANCE_SECRET)
    async with webhook_receiver({"ops": OPS_SECRET.encode(), "finance": FINANCE_SECRET.encode()}) as receiver:
        receiver.fail_all = True
        key = await setup_policy(store, receiver, secret_file, budget={"monthlyUsd": "0.01", "softPercent": 1},
                                 projects=[{"name": "web"}])  # past the threshold after a few requests
        async with running_control_plane(store, tmp_path / "cp", webhook_retry_seconds=0.2) as cp, \
                running_data_plane(dp_settings(cp.grpc_target, tmp_path / "dp")) as dp:
            await eventually(lambda: first_grant(dp), what="a first grant")
            client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=key, max_retries=0)
            started = time.monotonic()
            while not (await admin_get(cp, "/admin/v1/alerts"))["items"] and time.monotonic() - started < 30:
                assert isinstance(await ask(client, 0), int)
            items = await alerts_when(cp, lambda items: bool(items) and items[0]["attempts"] >= 2)
            [before] = items
            assert before["kind"] == SOFT and before["state"] == "pending"
            assert "answered 500" in before["deliveries"][0]["lastError"]
        receiver.fail_all = False
        async with running_control_plane(store, tmp_path / "cp", webhook_retry_seconds=0.2) as cp:
            [after] = await alerts_when(cp, lambda items: delivered(items, SOFT))
        assert after["id"] == before["id"]
        assert after["attempts"] > before["attempts"]
        got = receiver.of(SOFT)
        assert got[-1].answered == 204 and {r.event_id for r in got} == {before["id"]}
        assert len({r.body for r in got}) == 1
