"""The admin API over a real loopback socket, on the embedded store: what `gatectl` and an operator see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controlplane.admin.api import create_admin_app
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.core.policy_docs import api_key, model, provider, route, tenant
from tollway import keyformat

TOKEN = "admin-secret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = [provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu", projects=("web",))]

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class FixedStatus:
    def dataplanes(self) -> list[dict[str, Any]]:
        return [{"nodeId": "dp-1", "region": "eu", "version": "abc", "status": "ACK", "error": "",
                 "lastSeen": "2026-01-01T00:00:00Z", "connected": True}]

    def snapshots(self) -> list[dict[str, Any]]:
        return [{"region": "eu", "version": "abc", "tenants": 1, "keys": 0, "deployments": 1, "routes": 1}]

    def providers(self) -> list[dict[str, Any]]:
        return []


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(store: Store, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_admin_app(Repository(store), FixedStatus(), TOKEN))


def body(*documents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"documents": [{"source": f"policies/a.yaml#{i}", "document": d} for i, d in enumerate(documents)],
            "who": "alice", **extra}


async def call(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    resp = await client.request(method, path, headers=AUTH, **kwargs)
    answer = await resp.json()
    assert resp.status == status, answer
    return answer


async def test_health_needs_no_token(client: Client) -> None:
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(("headers", "status", "type_"), [
    ({}, 401, "authentication_error"),
    ({"Authorization": "Bearer wrong"}, 401, "authentication_error"),
    ({"Authorization": TOKEN}, 401, "authentication_error"),
    ({"Authorization": f"Bearer {keyformat.generate_key()}"}, 403, "permission_error"),
])
async def test_auth(client: Client, headers: dict[str, str], status: int, type_: str) -> None:
    resp = await client.get("/admin/v1/resources?kind=Tenant", headers=headers)
    answer = await resp.json()
    assert (resp.status, answer["error"]["type"]) == (status, type_)
    if status == 403:
        assert answer["error"]["message"] == "inference keys cannot be used on the admin API"
    assert TOKEN not in str(answer)


async def test_apply_get_and_dry_run(client: Client) -> None:
    dry = await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE, dryRun=True))
    assert (dry["revision"], dry["applied"]) == (0, False)
    assert (await call(client, "GET", "/admin/v1/resources?kind=Route", 200))["items"] == []
    applied = await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    assert (applied["revision"], applied["applied"]) == (1, True)
    assert [(c["op"], c["kind"], c["name"], c["source"]) for c in applied["changes"]] == [
        ("create", "Provider", "p", "policies/a.yaml#0"), ("create", "Model", "m", "policies/a.yaml#1"),
        ("create", "Route", "r", "policies/a.yaml#2"), ("create", "Tenant", "t", "policies/a.yaml#3")]
    assert applied["changes"][2]["diff"].startswith("--- /dev/null\n+++ b/Route/r\n")
    got = await call(client, "GET", "/admin/v1/resources?kind=routes&name=r", 200)
    assert got["revision"] == 1 and got["items"][0]["spec"]["strategy"] == "cheapest"
    missing = await call(client, "GET", "/admin/v1/resources?kind=Route&name=nope", 404)
    assert missing["error"]["type"] == "not_found"
    again = await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    assert (again["revision"], again["applied"], {c["op"] for c in again["changes"]}) == (1, False, {"unchanged"})


async def test_invalid_document_is_422_naming_file_and_field_and_writes_nothing(client: Client) -> None:
    bad = model("m2", "p")
    bad["spec"]["pricing"]["inputPerMillion"] = "free"
    answer = await call(client, "POST", "/admin/v1/apply", 422, json=body(*BASE, bad))
    assert answer["error"]["type"] == "invalid_policy"
    assert answer["error"]["problems"] == [{
        "source": "policies/a.yaml#4", "kind": "Model", "name": "m2", "field": "spec.pricing.inputPerMillion",
        "message": answer["error"]["problems"][0]["message"]}]
    assert (await call(client, "GET", "/admin/v1/resources?kind=Provider", 200)) == {"revision": 0, "items": []}
    assert (await call(client, "GET", "/admin/v1/history", 200))["items"] == []


async def test_missing_reference_is_422(client: Client) -> None:
    answer = await call(client, "POST", "/admin/v1/apply", 422, json=body(provider("p"), model("m", "ghost")))
    assert [(p["kind"], p["name"], p["field"], p["source"]) for p in answer["error"]["problems"]] == [
        ("Model", "m", "spec.provider", "policies/a.yaml#1")]
    assert "ghost" in answer["error"]["problems"][0]["message"]
    assert (await call(client, "GET", "/admin/v1/resources?kind=Provider", 200))["items"] == []


async def test_concurrent_change_is_409(client: Client, store: Store, aiohttp_client: MakeClient) -> None:
    await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    # another control plane instance on the same store writes generation 2
    other = await aiohttp_client(create_admin_app(Repository(store), FixedStatus(), TOKEN))
    await call(other, "POST", "/admin/v1/apply", 200, json=body(route("r2", "m")))
    answer = await call(client, "POST", "/admin/v1/apply", 409, json=body(route("r3", "m"), expectedRevision=1))
    assert answer["error"]["type"] == "conflict"
    assert [i["metadata"]["name"] for i in (await call(client, "GET", "/admin/v1/resources?kind=Route", 200))[
        "items"]] == ["r", "r2"]


async def test_delete(client: Client) -> None:
    await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    refused = await call(client, "DELETE", "/admin/v1/resources/Model/m?who=bob", 409)
    assert refused["error"]["type"] == "in_use" and "Route/r" in refused["error"]["message"]
    assert refused["error"]["referrers"] == [{"kind": "Route", "name": "r", "field": "spec.models[0]"}]
    await call(client, "DELETE", "/admin/v1/resources/Route/nope", 404)
    assert (await call(client, "DELETE", "/admin/v1/resources/Route/r?who=bob", 200)) == {"revision": 2}
    latest = (await call(client, "GET", "/admin/v1/history?limit=1", 200))["items"]
    assert [(e["revision"], e["who"], e["changes"]) for e in latest] == [
        (2, "bob", [{"op": "delete", "kind": "Route", "name": "r"}])]


async def test_key_secret_is_shown_once(client: Client) -> None:
    await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    created = await call(client, "POST", "/admin/v1/keys", 201,
                         json={"name": "ci", "tenant": "t", "project": "web", "routes": [], "who": "alice"})
    secret = created["secret"]
    assert keyformat.is_well_formed(secret) and created["hint"] == keyformat.hint(secret)
    got = await call(client, "GET", "/admin/v1/resources?kind=ApiKey&name=ci", 200)
    spec = got["items"][0]["spec"]
    assert spec["hash"] == "sha256:" + keyformat.hash_key(secret).hex() and spec["hint"] == created["hint"]
    for path in ("/admin/v1/resources?kind=ApiKey", "/admin/v1/history", "/admin/v1/history/2"):
        resp = await client.get(path, headers=AUTH)
        assert secret not in await resp.text()
    dup = await call(client, "POST", "/admin/v1/keys", 409, json={"name": "ci", "tenant": "t", "who": "alice"})
    assert dup["error"]["type"] == "already_exists" and "'ci' already exists" in dup["error"]["message"]
    bad = await call(client, "POST", "/admin/v1/keys", 422, json={"name": "ci2", "tenant": "ghost"})
    assert bad["error"]["problems"][0]["field"] == "spec.tenant"
    # the new key cannot administer the control plane
    resp = await client.get("/admin/v1/history", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 403


async def test_history_and_rollback_restore(client: Client) -> None:
    await call(client, "POST", "/admin/v1/apply", 200, json=body(*BASE))
    g1 = await call(client, "GET", "/admin/v1/resources?kind=Provider", 200)
    await call(client, "POST", "/admin/v1/apply", 200,
               json=body(provider("p", base_url="http://127.0.0.1:2/v1"), api_key("k", "t")))
    history = (await call(client, "GET", "/admin/v1/history", 200))["items"]
    assert [(e["revision"], e["who"], sorted((c["op"], c["name"]) for c in e["changes"])) for e in history] == [
        (2, "alice", [("create", "k"), ("update", "p")]),
        (1, "alice", [("create", "m"), ("create", "p"), ("create", "r"), ("create", "t")])]
    assert history[0]["time"].endswith("Z")
    entry = await call(client, "GET", "/admin/v1/history/2", 200)
    assert {c["name"]: c["before"] is None for c in entry["changes"]} == {"p": False, "k": True}
    rolled = await call(client, "POST", "/admin/v1/rollback", 200,
                        json={"toRevision": 1, "who": "carol", "includeKeys": True})
    assert (rolled["revision"], rolled["applied"]) == (3, True)
    assert sorted((c["op"], c["name"]) for c in rolled["changes"]) == [("delete", "k"), ("update", "p")]
    assert (await call(client, "GET", "/admin/v1/resources?kind=Provider", 200))["items"] == g1["items"]
    assert (await call(client, "GET", "/admin/v1/resources?kind=ApiKey", 200))["items"] == []
    assert (await call(client, "GET", "/admin/v1/history?limit=1", 200))["items"][0]["who"] == "carol"
    await call(client, "POST", "/admin/v1/rollback", 404, json={"toRevision": 7, "who": "carol"})


async def test_status_and_bad_requests(client: Client) -> None:
    assert (await call(client, "GET", "/admin/v1/dataplanes", 200))["items"][0]["nodeId"] == "dp-1"
    assert (await call(client, "GET", "/admin/v1/snapshots", 200))["items"][0]["region"] == "eu"
    assert (await call(client, "GET", "/admin/v1/resources?kind=Gadget", 400))["error"]["type"] == (
        "invalid_request_error")
    assert (await call(client, "POST", "/admin/v1/apply", 400, data=b"{not json"))["error"]["type"] == (
        "invalid_request_error")
    assert (await call(client, "GET", "/admin/v1/nope", 404))["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", [
    "/admin/v1/history?limit=²", "/admin/v1/history/²", "/admin/v1/history/٣", "/admin/v1/history?limit=" + "9" * 5000,
    "/admin/v1/history/" + "1" * 5000, "/admin/v1/audit?limit=²", "/admin/v1/audit?limit=" + "9" * 5000,
])
async def test_numbers_in_other_unicode_digits_or_of_any_length_are_refused_not_a_5xx(client: Client,
                                                                                       path: str) -> None:
    resp = await client.get(path, headers=AUTH)
    text = await resp.text()
    # A bad query parameter is a 400; a path naming no revision is a 404; the echo of the input stays short.
    assert resp.status == (400 if "?" in path else 404), text
    assert (await resp.json())["error"]["message"] and len(text) < 400
