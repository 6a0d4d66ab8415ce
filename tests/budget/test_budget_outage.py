"""Static stability with budgets: a data plane restarted while the control plane is down keeps serving budgeted
tenants from the grants it checked out to disk, and once the control plane is back the ledger is exact.

Real gRPC, sockets, store and DuckDB; the control plane is stopped (its port then refuses), the data plane is
stopped and a new one started on the same state directory, as a crash or deploy would.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import openai

from controlplane.server import ControlPlane
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.budget.test_budget_fleet import ask, setup_policy
from tests.discovery.conftest import FAST, cp_settings, dp_settings, eventually
from tollway.budget_scopes import period_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_data_plane_restarted_during_an_outage_serves_budgeted_tenants_and_the_ledger_stays_exact(
        store: Store, tmp_path: Path) -> None:
    secret = await setup_policy(store, "1")  # $1: room for thousands of these requests
    port = _free_port()
    cp = ControlPlane(cp_settings(tmp_path / "cp", grpc_port=port), store=store)
    await cp.start()
    await eventually(lambda: cp.publisher.is_ready, what="first publish")
    target = f"127.0.0.1:{port}"
    settings = dp_settings(target, tmp_path / "dp", node_id="dp-a")
    told: list[int] = []

    first = DataPlane(settings, backoff=FAST)
    await first.start()
    await eventually(lambda: first.is_ready and first.leases.answers > 0, what="a snapshot and a first grant")
    incarnation = first.leases.incarnation
    client = openai.AsyncOpenAI(base_url=f"{first.url}/v1", api_key=secret, max_retries=0)
    for i in range(10):
        result = await ask(client, i)
        assert isinstance(result, int), result
        told.append(result)
    await eventually(lambda: first.shipper is not None and first.shipper.backlog == 0, what="usage shipped")
    await client.close()

    await cp.stop()  # the control plane goes away...
    await first.stop()  # ...and the data plane restarts while it is gone
    second = DataPlane(settings, backoff=FAST)
    await second.start()
    try:
        assert second.is_ready and second.leases.incarnation == incarnation  # the same holder for the ledger
        # A clean stop wrote what was spent: the restart counts that, not everything it had checked out.
        restored = second.budgets.allowance("tenant/acme", period_of(time.time()))
        assert restored is not None and restored.spent == sum(told)
        client = openai.AsyncOpenAI(base_url=f"{second.url}/v1", api_key=secret, max_retries=0)
        for i in range(10, 30):
            result = await ask(client, i)
            assert isinstance(result, int), f"request {i} during the outage after a restart: {result}"
            told.append(result)
        await client.close()

        back = ControlPlane(cp_settings(tmp_path / "cp", grpc_port=port), store=store)
        await back.start()
        try:
            ledger = back.ledger
            assert ledger is not None
            period = period_of(time.time())
            deadline = time.monotonic() + 20
            while (await ledger.state(period, "tenant/acme")).spent != sum(told) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            state = await ledger.state(period, "tenant/acme")
            assert state.spent == sum(told)  # every request once: nothing lost, nothing double counted
            assert state.spent + state.outstanding() <= 10**12  # no overspend
            rows = await back.usage_db.spend(["tenant"])
            assert [r.cost_pico for r in rows] == [sum(told)]
        finally:
            await back.stop()
    finally:
        await second.stop()
