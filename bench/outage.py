"""A control-plane outage under steady load, with real processes: do budgeted tenants keep being served, and is
the money exact once the control plane is back?

What runs, as a user runs it (``bench.harness.fleet``): etcd; ``gatectl controlplane serve --store etcd://...
--lease-ttl T`` on fixed ports; ``--data-planes`` times ``gatectl dataplane serve`` on fixed ports and node ids; a
policy with a mock provider (no upstream) and a tenant whose monthly budget has room; one key. The openai SDK
(``max_retries=0``) sends ``--rate`` chat requests a second (open loop), round robin over the data planes in
service, and keeps the exact cost each answer reports in ``x-tollway-cost-usd``. A data plane about to be
restarted is first taken out of service and drained, as a load balancer would; nothing is ever retried.

The scenario: ``--before`` seconds of load; the control plane SIGKILLed; ``--restarts`` data-plane restarts
spread over the first 70 % of the ``--outage`` (round robin over the data planes, SIGTERM and SIGKILL in turn,
each started again on its state directory, node id and port); the control plane started again on the same store
and ports once the outage has lasted its time and every restart is done; ``--after`` seconds of load. Then, once
the data planes' spools have drained, three sums that must be equal to the pico-dollar: what the clients were
told, the ledger's ``spent`` for the tenant (its document in etcd, ``controlplane.money.ledger``) and the tenant's
usage in DuckDB (``gatectl usage -o json``). Also reported: how long after the control plane was back each data
plane's grant was renewed (read from its ``grants.json``).

    python -m bench.outage [--lease-ttl 900] [--outage 600] [--rate 50] [--data-planes 2] [--restarts 4]
                           [--before 20] [--after 30] [--budget-usd 1000] [--work DIR]

Requests are sent within one calendar month (the ledger's period); a run across midnight UTC at the end of a
month would split the ledger in two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import openai
import orjson

from bench.harness.fleet import Fleet
from controlplane.money.ledger import Ledger
from controlplane.store.open import open_store
from tollway.budget_scopes import period_of
from tollway.money import PICO_PER_USD, usd

Phase = Literal["warmup", "before", "outage", "after"]
PHASES: tuple[Phase, ...] = ("warmup", "before", "outage", "after")
TENANT, KEY, REGION, ROUTE = "acme", "acme-key", "eu", "chat"
SCOPE = f"tenant/{TENANT}"


def policy(budget_usd: str) -> list[dict[str, Any]]:
    """A mock provider (answers from the data plane itself), one priced model and route, the budgeted tenant."""
    def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        doc("Provider", "mock-eu", type="mock", baseUrl="http://127.0.0.1:1/v1", region=REGION),
        doc("Model", "small", provider="mock-eu", upstreamModel="small", contextWindow=8192, maxOutputTokens=1024,
            pricing={"inputPerMillion": "1.25", "outputPerMillion": "2.5"}),
        doc("Route", ROUTE, models=["small"]),
        doc("Tenant", TENANT, regions=[REGION], budget={"monthlyUsd": budget_usd}),
    ]


def pico_of_usd(text: str) -> int:
    """The exact amount of an ``x-tollway-cost-usd`` header (a decimal with at most 12 places)."""
    whole, _, frac = text.partition(".")
    return int(whole) * PICO_PER_USD + int(frac.ljust(12, "0"))


@dataclass(frozen=True, slots=True)
class Outcome:
    phase: Phase
    dp: int
    latency_s: float
    cost_pico: int | None  # None: the request failed
    error: str = ""        # the error code (or exception) of a failed request


class Load:
    """Open-loop load: ``rate`` requests a second, round robin over the data planes in service. One event loop."""

    def __init__(self, urls: list[str], secret: str, rate: float, max_in_flight: int = 256) -> None:
        self.clients = [openai.AsyncOpenAI(base_url=f"{u}/v1", api_key=secret, max_retries=0, timeout=30.0)
                        for u in urls]
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.in_service = [True] * len(urls)
        self.in_flight = [0] * len(urls)
        self._idle = [asyncio.Event() for _ in urls]  # set while nothing is in flight on that data plane
        for idle in self._idle:
            idle.set()
        self.phase: Phase = "warmup"
        self.outcomes: list[Outcome] = []
        self._turn = 0
        self._sent = 0

    def _hold(self, dp: int) -> None:
        """Count a request in flight on ``dp`` from the moment it is picked, before its task runs: ``drain``
        must wait for it too."""
        self.in_flight[dp] += 1
        self._idle[dp].clear()

    async def ask(self, dp: int) -> Outcome:
        """One request to data plane ``dp``, recorded."""
        self._hold(dp)
        return await self._send(dp)

    async def _send(self, dp: int) -> Outcome:
        phase, n, started = self.phase, self._sent, time.perf_counter()
        self._sent += 1
        try:
            raw = await self.clients[dp].chat.completions.with_raw_response.create(
                model=ROUTE, messages=[{"role": "user", "content": f"question {n}: " + "tell me more " * (n % 7)}],
                max_tokens=8 + n % 25)
            outcome = Outcome(phase, dp, time.perf_counter() - started, pico_of_usd(raw.headers["x-tollway-cost-usd"]))
        except openai.APIStatusError as e:
            body = e.body if isinstance(e.body, dict) else {}
            outcome = Outcome(phase, dp, time.perf_counter() - started, None, str(body.get("code") or e.status_code))
        except openai.APIError as e:  # connection refused or reset, timeout: nothing was served
            outcome = Outcome(phase, dp, time.perf_counter() - started, None, type(e).__name__)
        finally:
            self.in_flight[dp] -= 1
            if not self.in_flight[dp]:
                self._idle[dp].set()
        self.outcomes.append(outcome)
        return outcome

    async def warm_up(self, timeout_s: float = 60.0) -> None:
        """Until every data plane has served one request (its first grant, the key in its snapshot)."""
        deadline = time.monotonic() + timeout_s
        for dp in range(len(self.clients)):
            while (await self.ask(dp)).cost_pico is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"data plane {dp} served nothing in {timeout_s} s: {self.outcomes[-1]}")
                await asyncio.sleep(0.2)

    def _pick(self) -> int | None:
        for _ in range(len(self.clients)):
            dp, self._turn = self._turn, (self._turn + 1) % len(self.clients)
            if self.in_service[dp]:
                return dp
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Send on schedule until ``stop``; then wait for the requests in flight."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[Outcome]] = set()
        try:
            await self._schedule(stop, tasks, loop.time())
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _schedule(self, stop: asyncio.Event, tasks: set[asyncio.Task[Outcome]], start: float) -> None:
        loop, n = asyncio.get_running_loop(), 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, start + n / self.rate - loop.time())):
                    await stop.wait()
            if stop.is_set():
                break
            while len(tasks) >= self.max_in_flight:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            dp = self._pick()
            if dp is None:  # every data plane out of service: wait, the schedule catches up
                await asyncio.sleep(0.01)
                continue
            self._hold(dp)
            task = asyncio.create_task(self._send(dp))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1

    async def drain(self, dp: int) -> None:
        """Take ``dp`` out of service and wait until nothing is in flight on it."""
        self.in_service[dp] = False
        await self._idle[dp].wait()

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@dataclass(frozen=True, slots=True)
class Restart:
    dp: int
    signal: str
    at_s: float           # when it was taken out of service, seconds after the control plane was killed
    stop_s: float         # drained and stopped
    down_s: float         # out of service in all (drain, stop, start, /readyz)
    exit_status: int


@dataclass(frozen=True, slots=True)
class PhaseFigures:
    requests: int
    served: int
    failed: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, outcomes: list[Outcome]) -> PhaseFigures:
        failed = [o for o in outcomes if o.cost_pico is None]
        errors: dict[str, int] = {}
        for o in failed:
            errors[o.error] = errors.get(o.error, 0) + 1
        latencies = sorted(o.latency_s * 1000 for o in outcomes) or [0.0]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return cls(len(outcomes), len(outcomes) - len(failed), len(failed), errors, statistics.median(latencies),
                   p99, latencies[-1])


@dataclass(frozen=True)
class Scenario:
    lease_ttl_s: float = 900.0
    outage_s: float = 600.0
    rate: float = 50.0
    data_planes: int = 2
    restarts: int = 4
    before_s: float = 20.0
    after_s: float = 30.0
    budget_usd: str = "1000"
    settle_timeout_s: float = 120.0


@dataclass
class Report:
    scenario: Scenario
    phases: dict[Phase, PhaseFigures] = field(default_factory=dict)
    restarts: list[Restart] = field(default_factory=list)
    outage_s: float = 0.0        # control plane killed -> serving again
    renewed_s: list[float] = field(default_factory=list)  # per data plane: back -> its grant renewed (-1: never)
    told_pico: int = 0           # Σ x-tollway-cost-usd of every answer
    ledger_spent_pico: int = 0
    ledger_outstanding_pico: int = 0
    limit_pico: int = 0
    duckdb_pico: int = 0         # gatectl usage: the tenant's cost
    duckdb_requests: int = 0
    settle_s: float = 0.0        # load stopped -> ledger and DuckDB caught up (or the timeout)
    wall_s: float = 0.0

    @property
    def served(self) -> int:
        return sum(p.served for p in self.phases.values())

    @property
    def failed(self) -> int:
        return sum(p.failed for name, p in self.phases.items() if name != "warmup")

    @property
    def is_exact(self) -> bool:
        return self.ledger_spent_pico == self.told_pico == self.duckdb_pico


async def _restart(fleet: Fleet, load: Load, k: int, killed_at: float) -> Restart:
    dp = k % fleet.data_planes
    sig = (signal.SIGTERM, signal.SIGKILL)[(k + k // fleet.data_planes) % 2]
    began = time.monotonic()
    await load.drain(dp)
    status = await fleet.dps[dp].stop(sig)
    stopped = time.monotonic()
    await fleet.start_data_plane(dp, REGION)
    load.in_service[dp] = True
    ready = time.monotonic()
    return Restart(dp, sig.name, began - killed_at, stopped - began, ready - began, status)


async def _restarts(fleet: Fleet, load: Load, scenario: Scenario, killed_at: float, done: list[Restart]) -> None:
    for k in range(scenario.restarts):
        at = killed_at + scenario.outage_s * 0.7 * (k + 0.5) / scenario.restarts
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        done.append(await _restart(fleet, load, k, killed_at))


async def _renewals(fleet: Fleet, killed_wall: float, back_wall: float, ttl: float, within_s: float) -> list[float]:
    """Per data plane, how long after the control plane was back (its log said so) the first grant of the new
    control-plane process arrived: a grant answered after the kill expires later than ``killed + ttl``. One sent
    just before the log line was read counts as 0."""
    renewed: dict[int, float] = {}
    deadline = time.monotonic() + within_s
    while len(renewed) < fleet.data_planes and time.monotonic() < deadline:
        for i in range(fleet.data_planes):
            expiry = fleet.grant_expiry(i)
            if i not in renewed and expiry > killed_wall + ttl:
                renewed[i] = max(0.0, expiry - ttl - back_wall)  # a grant starts when its request was sent
        await asyncio.sleep(0.1)
    return [renewed.get(i, -1.0) for i in range(fleet.data_planes)]


async def _tenant_cost(fleet: Fleet, session: aiohttp.ClientSession) -> int:
    """The tenant's cost this month in pico-dollars, from the admin API (DuckDB)."""
    async with session.get(f"{fleet.admin_url}/admin/v1/usage", params={"by": "tenant", "tenant": TENANT},
                           headers={"authorization": f"Bearer {fleet.admin_token}"}) as resp:
        resp.raise_for_status()
        rows = (await resp.json())["rows"]
    return sum(int(r["costPico"]) for r in rows)


async def _settle(fleet: Fleet, report: Report) -> None:
    """Wait until the ledger and DuckDB hold what the clients were told (or the timeout); record both."""
    store = await open_store(fleet.etcd_url)
    ledger = Ledger(store)
    began = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10.0)) as session:
            while True:
                state = await ledger.state(period_of(time.time()), SCOPE)
                duckdb_pico = await _tenant_cost(fleet, session)
                if (state.spent == duckdb_pico == report.told_pico
                        or time.monotonic() - began > report.scenario.settle_timeout_s):
                    break
                await asyncio.sleep(0.5)
    finally:
        await store.close()
    report.settle_s = time.monotonic() - began
    report.ledger_spent_pico, report.ledger_outstanding_pico = state.spent, state.outstanding()
    # The last word is gatectl's, as a user reads it.
    answer = orjson.loads(await fleet.gatectl("usage", "--by", "tenant", "--tenant", TENANT, "-o", "json"))
    report.duckdb_pico = sum(int(r["costPico"]) for r in answer["rows"])
    report.duckdb_requests = sum(int(r["requests"]) for r in answer["rows"])


async def run(scenario: Scenario, work: Path, etcd_url: str = "") -> Report:
    """Run the scenario in ``work`` (logs and state stay there); on ``etcd_url`` (an empty etcd) or a new one."""
    report = Report(scenario, limit_pico=round(float(scenario.budget_usd) * PICO_PER_USD))
    wall = time.monotonic()
    fleet = Fleet(work, scenario.data_planes, scenario.lease_ttl_s, etcd_url=etcd_url)
    load: Load | None = None
    sending: asyncio.Task[None] | None = None
    try:
        if not etcd_url:
            await fleet.start_etcd()
        await fleet.start_control_plane()
        await fleet.apply(policy(scenario.budget_usd))
        secret = (await fleet.gatectl("keys", "create", KEY, "--tenant", TENANT, "--quiet")).strip()
        await asyncio.gather(*(fleet.start_data_plane(i, REGION) for i in range(scenario.data_planes)))
        load = Load([fleet.dp_url(i) for i in range(scenario.data_planes)], secret, scenario.rate)
        await load.warm_up()

        stop = asyncio.Event()
        load.phase = "before"
        sending = asyncio.create_task(load.run(stop))
        await asyncio.sleep(scenario.before_s)

        load.phase = "outage"
        killed_at, killed_wall = time.monotonic(), time.time()
        await fleet.kill_control_plane()
        restarting = asyncio.create_task(_restarts(fleet, load, scenario, killed_at, report.restarts))
        await asyncio.sleep(max(0.0, killed_at + scenario.outage_s - time.monotonic()))
        await restarting  # on a slow machine the outage lasts until every restart is done
        await fleet.start_control_plane()
        report.outage_s = time.monotonic() - killed_at
        load.phase = "after"
        renewing = asyncio.create_task(_renewals(fleet, killed_wall, time.time(), scenario.lease_ttl_s,
                                                 within_s=max(scenario.after_s, 30.0)))
        await asyncio.sleep(scenario.after_s)
        stop.set()
        await sending
        report.renewed_s = await renewing

        report.phases = {p: PhaseFigures.of([o for o in load.outcomes if o.phase == p]) for p in PHASES}
        report.told_pico = sum(o.cost_pico for o in load.outcomes if o.cost_pico is not None)
        await _settle(fleet, report)
    finally:
        if sending is not None and not sending.done():  # the scenario failed: stop the load first
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        if load is not None:
            await load.close()
        await fleet.close()
    report.wall_s = time.monotonic() - wall
    return report


def format_report(r: Report) -> str:
    s = r.scenario
    lines = [f"control-plane outage: lease {s.lease_ttl_s:g} s, outage {r.outage_s:.1f} s (killed -> serving "
             f"again), {s.rate:g} req/s over {s.data_planes} data planes, budget ${s.budget_usd}",
             f"{'phase':<8} {'requests':>9} {'served':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
             "  errors"]
    for name, p in r.phases.items():
        lines.append(f"{name:<8} {p.requests:>9} {p.served:>9} {p.failed:>7} {p.p50_ms:>8.1f} {p.p99_ms:>8.1f} "
                     f"{p.max_ms:>8.1f}  {p.errors or ''}")
    renewed = ", ".join(f"dp-{i} {d:.1f} s" if d >= 0 else f"dp-{i} not renewed" for i, d in enumerate(r.renewed_s))
    lines.append(f"grants renewed after the control plane was back: {renewed}")
    lines.append(f"data-plane restarts during the outage: {len(r.restarts)}")
    lines.extend(f"  dp-{x.dp} {x.signal:<7} at +{x.at_s:.1f} s: stopped in {x.stop_s:.1f} s, out of service "
                 f"{x.down_s:.1f} s, exit {x.exit_status}" for x in r.restarts)
    lines += [f"told the clients: ${usd(r.told_pico)} ({r.told_pico} pico) over {r.served} answers",
              f"ledger spent:     ${usd(r.ledger_spent_pico)} ({r.ledger_spent_pico} pico); outstanding grants "
              f"${usd(r.ledger_outstanding_pico)}; limit ${usd(r.limit_pico)}",
              f"DuckDB (gatectl usage): ${usd(r.duckdb_pico)} ({r.duckdb_pico} pico) over {r.duckdb_requests} "
              f"requests",
              f"exact: {'yes' if r.is_exact else 'NO'} (settled {r.settle_s:.1f} s after the load stopped); "
              f"spent + outstanding <= limit: {r.ledger_spent_pico + r.ledger_outstanding_pico <= r.limit_pico}; "
              f"wall {r.wall_s:.0f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lease-ttl", type=float, default=900.0, help="seconds (gatectl controlplane serve)")
    parser.add_argument("--outage", type=float, default=600.0, help="seconds the control plane stays down")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second, over every data plane")
    parser.add_argument("--data-planes", type=int, default=2)
    parser.add_argument("--restarts", type=int, default=4, help="data-plane restarts during the outage")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load before the outage")
    parser.add_argument("--after", type=float, default=30.0, help="seconds of load after the control plane is back")
    parser.add_argument("--budget-usd", default="1000", help="the tenant's monthly budget")
    parser.add_argument("--work", type=Path, help="keep state and logs here [default: a temporary directory]")
    args = parser.parse_args()
    scenario = Scenario(lease_ttl_s=args.lease_ttl, outage_s=args.outage, rate=args.rate,
                        data_planes=args.data_planes, restarts=args.restarts, before_s=args.before,
                        after_s=args.after, budget_usd=args.budget_usd)
    with tempfile.TemporaryDirectory(prefix="tollway-outage-") as tmp:
        report = asyncio.run(run(scenario, args.work or Path(tmp)))
    print(format_report(report))
    ok = report.failed == 0 and report.is_exact and report.ledger_spent_pico <= report.limit_pico
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
