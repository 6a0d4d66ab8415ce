"""Usage end to end: the official SDK through a real data plane; records reach the control plane's DuckDB.

What the operator sees (``GET /admin/v1/usage``) must add up, to the pico-dollar, to what each client was told
in ``x-tollway-cost-usd-micros``, with one record per request that reached an upstream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.embedded import EmbeddedStore
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import DataPlaneFactory, eventually, running_control_plane


def pico_of_usd(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**12 + int(frac.ljust(12, "0"))

async def usage_rows(admin_url: str, token: str, by: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(
        f"{admin_url}/admin/v1/usage", params={"by": by}, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        rows: list[dict[str, Any]] = (await resp.json())["rows"]
        return rows


async def test_every_request_is_recorded_once_and_costs_add_up(
    tmp_path: Path, data_plane_factory: DataPlaneFactory
) -> None:
    store = await EmbeddedStore.open(str(tmp_path / "store"))
    try:
        repo = Repository(store)
        docs = [provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu", inp="0.15", out="0.60"),
                route("chat", "small"), tenant("acme", "eu", projects=("web",)), tenant("other", "eu")]
        await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
        async with running_control_plane(store, tmp_path / "cp") as cp:
            acme = await repo.create_key("acme-web", "acme", who="test", project="web")
            other = await repo.create_key("other", "other", who="test")
            dp = await data_plane_factory(cp.grpc_target)
            await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 2  # type: ignore[union-attr]
                             , what="snapshot with both keys")
            told = 0
            client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=acme.secret, max_retries=0)
            for i in range(3):
                raw = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=[{"role": "user", "content": f"question number {i}"}], user="alice")
                told += pico_of_usd(raw.headers["x-tollway-cost-usd"])  # exact
            stream = await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "stream it"}], stream=True,
                stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.usage is not None:  # price: 0.15 in, 0.60 out per million = pico-dollars per token
                    told += chunk.usage.prompt_tokens * 150_000 + chunk.usage.completion_tokens * 600_000
            other_client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=other.secret, max_retries=0)
            await other_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.NotFoundError):  # refused before any upstream: no record
                await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])

            deadline = time.monotonic() + 10
            while True:
                rows = await usage_rows(cp.admin_url, cp.admin_token, "tenant,project")
                if sum(r["requests"] for r in rows) >= 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            by_tenant = {r["group"]["tenant"]: r for r in rows}
            assert by_tenant["acme"]["requests"] == 4 and by_tenant["acme"]["group"]["project"] == "web"
            assert by_tenant["other"]["requests"] == 1
            users = await usage_rows(cp.admin_url, cp.admin_token, "user")
            assert {r["group"]["user"]: r["requests"] for r in users} == {"alice": 3, "": 2}
            assert int(by_tenant["acme"]["costPico"]) == told > 0  # exact, whatever the number of requests
            assert by_tenant["other"]["costMicros"] > 0
            await asyncio.sleep(0.5)  # nothing arrives twice, even after the shipper's next round
            again = await usage_rows(cp.admin_url, cp.admin_token, "tenant")
            assert sum(r["requests"] for r in again) == 5
    finally:
        await store.close()
