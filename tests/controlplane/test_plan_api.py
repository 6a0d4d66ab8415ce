"""``POST /admin/v1/plan`` over a real loopback socket, on the embedded store: answers, refusals, nothing written."""

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
from tests.core.policy_docs import model, provider, route, tenant

TOKEN = "admin-secret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = [provider("p"), model("m", "p"), route("r", "m"), tenant("t", "eu", projects=("web",))]

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class Fleet:
    """Data planes run in eu and in ap, a region no policy names."""

    def dataplanes(self) -> list[dict[str, Any]]:
        return []

    def snapshots(self) -> list[dict[str, Any]]:
        return [{"region": "eu", "version": "x"}, {"region": "ap", "version": "y"}]

    def providers(self) -> list[dict[str, Any]]:
        return []


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: MakeClient) -> AsyncIterator[Client]:
    store: Store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        yield await aiohttp_client(create_admin_app(Repository(store), Fleet(), TOKEN))
    finally:
        await store.close()


def body(*documents: dict[str, Any]) -> dict[str, Any]:
    return {"documents": [{"source": f"policies/a.yaml#{i + 1}", "document": d} for i, d in enumerate(documents)]}


async def call(client: Client, path: str, status: int, **kwargs: Any) -> Any:
    resp = await client.post(path, headers=AUTH, **kwargs)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_a_plan_compares_every_region_and_writes_nothing(client: Client) -> None:
    await call(client, "/admin/v1/apply", 200, json=body(*BASE) | {"who": "alice"})
    answer = await call(client, "/admin/v1/plan", 200, json=body(model("m", "p", inp="0.5")))
    assert answer["changed"] is True and answer["revision"] == 1
    assert answer["resources"] == [{"op": "update", "kind": "Model", "name": "m"}]
    regions = {r["region"]: r for r in answer["regions"]}
    assert sorted(regions) == ["ap", "eu"]
    assert (regions["ap"]["changed"], regions["ap"]["changes"]) == (False, [])
    assert regions["eu"]["changes"] == [{"op": "update", "kind": "deployment", "name": "m", "fields": [
        {"field": "prices.input", "old": 1_000_000, "new": 500_000},
        {"field": "prices.cachedInput", "old": 1_000_000, "new": 500_000},  # unpriced cache reads: as input
        {"field": "prices.cacheWrite", "old": 1_000_000, "new": 500_000},
        {"field": "prices.cacheWrite1h", "old": 1_000_000, "new": 500_000}]}]
    history = await (await client.get("/admin/v1/history", headers=AUTH)).json()
    assert len(history["items"]) == 1

    same = await call(client, "/admin/v1/plan", 200, json=body(*BASE))
    assert same["changed"] is False and all(not r["changes"] for r in same["regions"])


async def test_refusals_are_in_the_apis_format(client: Client) -> None:
    assert (await client.post("/admin/v1/plan", json=body())).status == 401
    bad = await call(client, "/admin/v1/plan", 422, json=body(route("r", "nope")))
    assert [(p["source"], p["field"]) for p in bad["error"]["problems"]] == [("policies/a.yaml#1", "spec.models[0]")]
    not_json = await call(client, "/admin/v1/plan", 400, data=b"{")
    assert not_json["error"]["type"] == "invalid_request_error"
    not_list = await call(client, "/admin/v1/plan", 400, json={"documents": {"a": 1}})
    assert not_list["error"]["message"] == "'documents' must be of type list"
    not_doc = await call(client, "/admin/v1/plan", 400, json={"documents": [1]})
    assert "documents[0]" in not_doc["error"]["message"]
