"""First use of never-seen budget scopes: with the control plane reachable, no request is refused for want of a
grant. 80 users nobody has seen, each with a per-user budget, send 5,000 requests 48 at a time over 3 data planes;
every one is served (the first request of a scope waits, bounded, for the grant that covers it).

Real control plane (embedded store and etcd), real gRPC leases, three data planes on sockets, the openai SDK
in a process of its own (``first_use_clients``).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import orjson

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from tests.budget.test_budget_fleet import budgeted_data_plane
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import eventually, running_control_plane

ROOT = Path(__file__).resolve().parents[2]
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
        # The clients run in a process of their own: sharing this loop, the SDK's CPU would delay the lease
        # answers (seconds, on a loaded 2-core machine) that a first request waits for.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.budget.first_use_clients", ",".join(dp.url for dp in planes), secret,
            str(REQUESTS), str(USERS), str(CONCURRENCY), stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        result = orjson.loads(out)
        outcomes = Counter(result["outcomes"])
        told = result["told_pico"]
        assert outcomes == Counter({"200": REQUESTS}), outcomes
        assert told > 0
