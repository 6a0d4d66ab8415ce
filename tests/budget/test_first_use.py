"""First use of never-seen budget scopes: with the control plane reachable, no request is refused for want of a
grant. 80 users nobody has seen, each with a per-user budget, send 5,000 requests 48 at a time over 3 data planes;
every one is served (the first request of a scope waits, bounded, for the grant that covers it).

Real control plane (embedded store and etcd), real gRPC leases, three data planes on sockets, the openai SDK.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import openai

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from tests.budget.test_budget_fleet import budgeted_data_plane, pico_of_usd
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import eventually, running_control_plane

USERS = 80
REQUESTS = 5000
CONCURRENCY = 48


async def test_5000_first_requests_of_80_new_users_on_3_data_planes_are_all_served(
        store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    docs = [provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu", inp="1", out="2"),
            route("chat", "small"),
            tenant("acme", "eu", budget={"monthlyUsd": "1000"}, perUserBudget={"monthlyUsd": "10"})]
    await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
    secret = (await repo.create_key("acme-key", "acme", who="test")).secret
    async with AsyncExitStack() as stack:
        cp = await stack.enter_async_context(running_control_plane(store, tmp_path / "cp"))
        planes = [await stack.enter_async_context(budgeted_data_plane(cp.grpc_target, tmp_path / n, n))
                  for n in ("dp-a", "dp-b", "dp-c")]
        for dp in planes:
            await eventually(lambda dp=dp: dp.is_ready and dp.leases.answers > 0,  # type: ignore[misc]
                             what="a snapshot and a first grant")
        clients = [openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=secret, max_retries=0) for dp in planes]
        for c in clients:
            stack.push_async_callback(c.close)
        outcomes: Counter[str] = Counter()
        told = 0
        queue = iter(range(REQUESTS))

        async def worker() -> None:
            nonlocal told
            for i in queue:
                try:
                    raw = await clients[i % 3].chat.completions.with_raw_response.create(
                        model="chat", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=16,
                        user=f"new-user-{i % USERS}")
                    told += pico_of_usd(raw.headers["x-tollway-cost-usd"])
                    outcomes["200"] += 1
                except openai.APIStatusError as e:
                    body = e.body if isinstance(e.body, dict) else {}
                    outcomes[str(body.get("code") or e.status_code)] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        assert outcomes == Counter({"200": REQUESTS}), outcomes
        assert told > 0
