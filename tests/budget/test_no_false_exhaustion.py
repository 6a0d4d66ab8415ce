"""No false exhaustion: a budget of N worst-case requests serves at least N - (number of data planes) of them in
concurrent bursts across data planes before it says "exceeded", and never spends more than N worst cases.

Real control plane (embedded store and etcd), three data planes on sockets, the openai SDK without retries (a
retry would hide a refusal). Also: a budget's own ``leaseSeconds`` sets how long its grants last.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import openai
from openai.types.chat import ChatCompletionMessageParam

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.store.base import Store
from dataplane.serve import DataPlane
from tests.budget.test_budget_fleet import budgeted_data_plane, pico_of_usd, settled_state
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import eventually, running_control_plane
from tollway.budget_scopes import period_of

N = 10  # the budget, in worst-case requests
PLANES = ("dp-a", "dp-b", "dp-c")
BURST = 200
# One worst case for every request.
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "the same question every time"}]


async def _ask(client: openai.AsyncOpenAI) -> int | str:
    try:
        raw = await client.chat.completions.with_raw_response.create(model="chat", messages=QUESTION, max_tokens=64)
        return pico_of_usd(raw.headers["x-tollway-cost-usd"])
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return str(body.get("code") or e.status_code)


def _need(dp: DataPlane, scope: str) -> int:
    a = dp.budgets.allowance(scope, period_of(time.time()))
    assert a is not None and a.need > 0
    return a.need


async def test_a_budget_of_n_worst_cases_serves_at_least_n_minus_the_data_planes_before_it_is_exceeded(
        store: Store, tmp_path: Path) -> None:
    repo = Repository(store)
    base = [provider("mock-eu", "eu", type_="mock"), model("small", "mock-eu", inp="3", out="15"),
            route("chat", "small"), tenant("probe", "eu", budget={"monthlyUsd": "100", "leaseSeconds": 120})]
    await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(base)], who="test")
    probe_secret = (await repo.create_key("probe-key", "probe", who="test")).secret
    async with AsyncExitStack() as stack:
        cp = await stack.enter_async_context(running_control_plane(store, tmp_path / "cp"))
        planes = [await stack.enter_async_context(budgeted_data_plane(cp.grpc_target, tmp_path / n, n))
                  for n in PLANES]
        for dp in planes:
            await eventually(lambda dp=dp: dp.is_ready and dp.leases.answers > 0,  # type: ignore[misc]
                             what="a snapshot and a first grant")
        # One request of the same shape under a roomy budget tells the worst case the data planes reserve.
        probe = openai.AsyncOpenAI(base_url=f"{planes[0].url}/v1", api_key=probe_secret, max_retries=0)
        stack.push_async_callback(probe.close)
        assert isinstance(await _ask(probe), int)
        worst = _need(planes[0], "tenant/probe")
        # The probe's own lease (120 s) rather than the control plane's ttl.
        allowance = planes[0].budgets.allowance("tenant/probe", period_of(time.time()))
        assert allowance is not None and 100 < allowance.expires_at - time.time() <= 120

        limit_pico = N * worst
        assert limit_pico % 1_000_000 == 0  # budgets are declared in micro-dollars
        budget_usd = f"{limit_pico // 10**12}.{limit_pico % 10**12:012d}"[:-6]
        await repo.apply([Document("acme", tenant("acme", "eu", budget={"monthlyUsd": budget_usd}))], who="test")
        secret = (await repo.create_key("acme-key", "acme", who="test")).secret
        await eventually(lambda: all(dp.budgets.index.limit_of("tenant/acme") is not None for dp in planes),
                         what="the new budget on every data plane")
        clients = [openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=secret, max_retries=0) for dp in planes]
        for c in clients:
            stack.push_async_callback(c.close)

        served, spent, outcomes = 0, 0, Counter[str]()
        for _wave in range(6):
            results = await asyncio.gather(*(_ask(clients[i % len(clients)]) for i in range(BURST)))
            served += sum(1 for r in results if isinstance(r, int))
            spent += sum(r for r in results if isinstance(r, int))
            outcomes.update(r for r in results if isinstance(r, str))
            if "tenant_budget_exceeded" in outcomes:
                break
            await asyncio.sleep(1.0)  # the next burst, after a lease interval
        # Exhaustion only once no room is left for a worst case anywhere; room held elsewhere is retryable.
        assert set(outcomes) <= {"tenant_budget_exceeded", "budget_rebalancing"}, outcomes
        assert "tenant_budget_exceeded" in outcomes, (served, outcomes)
        assert served >= N - len(PLANES), (served, outcomes)
        assert spent <= limit_pico
        state = await settled_state(cp.ledger, "tenant/acme", spent)
        assert state.spent == spent and state.spent + state.outstanding() <= limit_pico
