"""Budgets across a fleet: a real control plane (embedded store and etcd), two data planes, the openai SDK.

What a user sees: requests refused with 429 ``tenant_budget_exceeded`` once the budget is spent, never more
spent than the budget, and the operator's ledger and DuckDB agreeing, to the pico-dollar, with what each client
was told in ``x-tollway-cost-usd`` (exact: pico-dollars add up with no drift). Without the control plane a data
plane spends only its grant, then refuses with ``budget_lease_expired``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import openai

from controlplane.money.ledger import Ledger, ScopeState
from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import FAST, dp_settings, eventually, running_control_plane
from tollway.budget_scopes import period_of

BUDGET_MICROS = 10_000
BUDGET_PICO = BUDGET_MICROS * 1_000_000


def pico_of_usd(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**12 + int(frac.ljust(12, "0"))


@asynccontextmanager
async def budgeted_data_plane(cp_target: str, state_dir: Path, node: str) -> AsyncIterator[DataPlane]:
    dp = DataPlane(dp_settings(cp_target, state_dir, node_id=node), backoff=FAST)
    await dp.start()
    try:
        yield dp
    finally:
        await dp.stop()


async def setup_policy(store: Store, budget_usd: str) -> str:
    repo = Repository(store)
    docs = [provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu", inp="1", out="2"),
            route("chat", "small"), tenant("acme", "eu", budget={"monthlyUsd": budget_usd})]
    await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
    return (await repo.create_key("acme-key", "acme", who="test")).secret


async def settled_state(ledger: Ledger | None, scope: str, spent: int, within: float = 10.0) -> ScopeState:
    """The scope's ledger state this month once ``spent`` is settled (or as it stands after ``within``)."""
    assert ledger is not None
    period = period_of(time.time())
    deadline = time.monotonic() + within
    while (await ledger.state(period, scope)).spent != spent and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return await ledger.state(period, scope)


async def ask(client: openai.AsyncOpenAI, i: int) -> int | str:
    """The cost the client was told, or the error code it got."""
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": f"question {i}"}], max_tokens=16)
        return pico_of_usd(raw.headers["x-tollway-cost-usd"])
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return str(body.get("code") or e.status_code)


async def test_500_concurrent_requests_on_two_data_planes_never_overspend(store: Store, tmp_path: Path) -> None:
    secret = await setup_policy(store, "0.01")  # about 40 micro-dollars a request: ~250 of 500 fit
    async with running_control_plane(store, tmp_path / "cp") as cp, \
            budgeted_data_plane(cp.grpc_target, tmp_path / "a", "dp-a") as a, \
            budgeted_data_plane(cp.grpc_target, tmp_path / "b", "dp-b") as b:
        for dp in (a, b):
            await eventually(lambda dp=dp: dp.leases is not None and dp.leases.answers > 0  # type: ignore[misc]
                             and dp.is_ready, what="a first grant")
        clients = [openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=secret, max_retries=3) for dp in (a, b)]
        results = await asyncio.gather(*(ask(clients[i % 2], i) for i in range(500)))
        told = sum(r for r in results if isinstance(r, int))
        refused = [r for r in results if isinstance(r, str)]
        assert told <= BUDGET_PICO
        assert len(results) - len(refused) >= 50, refused[:5]
        # Exhaustion, or (retryable) room held by the other data plane while grants are rebalanced.
        assert set(refused) <= {"tenant_budget_exceeded", "budget_rebalancing", "budget_lease_pending"}, set(refused)
        assert "tenant_budget_exceeded" in refused

        state = await settled_state(cp.ledger, "tenant/acme", told)
        assert state.spent == told
        assert state.spent + state.outstanding() <= BUDGET_PICO
        rows = await cp.usage_db.spend(["tenant"])
        assert [r.cost_pico for r in rows] == [told]


async def test_without_the_control_plane_a_data_plane_spends_only_its_grant(store: Store, tmp_path: Path) -> None:
    secret = await setup_policy(store, "1")
    async with running_control_plane(store, tmp_path / "cp") as cp:
        cp_target = cp.grpc_target
        ledger: Ledger | None = cp.ledger
        assert ledger is not None
        dp_ctx = budgeted_data_plane(cp_target, tmp_path / "a", "dp-a")
        dp = await dp_ctx.__aenter__()
        try:
            await eventually(lambda: dp.leases.answers > 0, what="a first grant")
            allowance = next(iter(_allowances(dp)))
            granted = allowance.granted
            assert 0 < granted < 10**12  # less than the $1 budget, in pico-dollars
            await cp.stop()
            client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=secret, max_retries=0)
            results = [await ask(client, i) for i in range(40)]
            spent = sum(r for r in results if isinstance(r, int))
            assert spent <= granted
            # The lease (30 s) runs out: refused with the clear error.
            allowance.expires_at = time.time() - 1  # what the clock would show past the ttl
            expired = await ask(client, 99)
            assert expired == "budget_lease_expired"
        finally:
            await dp_ctx.__aexit__(None, None, None)


def _allowances(dp: DataPlane) -> list:  # type: ignore[type-arg]
    assert dp.leases is not None
    return dp.budgets.allowances()
