"""A data plane on loopback in front of fake OpenAI upstreams that a test can kill and restart on their port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import openai
from aiohttp import web

from dataplane.api.app import create_app
from dataplane.core.health import Health, HealthSettings, RetryBudget
from dataplane.record.records import Records
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.conftest import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

UPSTREAM_KEY = "sk-routing-upstream-0123456789"
CREDENTIAL_ENV = "TOLLWAY_TEST_ROUTING_KEY"


@dataclass
class Upstream:
    """A fake OpenAI server bound to a fixed port, so it can die and come back at the same address."""

    name: str
    port: int = field(default_factory=free_port)
    fake: FakeOpenAI = field(default_factory=lambda: FakeOpenAI(token=UPSTREAM_KEY))
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def served(self) -> int:
        return len(self.fake.requests)

    async def start(self) -> None:
        runner = web.AppRunner(self.fake.app(), shutdown_timeout=0.05)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self._runner = runner

    async def kill(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def snapshot(key: str, eu1: str, eu2: str, us: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-routing", region="eu")
    snap.tenants.add(name="acme", projects=["web"], regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme", hint="h")
    common = {"credential_env": CREDENTIAL_ENV, "connect_timeout_s": 0.5, "read_timeout_s": 1.0}
    snap.providers.add(name="eu1", type="openai", base_url=eu1, region="eu", **common)
    snap.providers.add(name="eu2", type="openai", base_url=eu2, region="eu", **common)
    snap.providers.add(name="us", type="openai", base_url=us, region="us", **common)
    prices = pb.Prices(input=100_000, output=400_000)
    for name in ("eu1", "eu2", "us"):
        snap.deployments.add(name=f"gpt-{name}", provider=name, upstream_model=f"model-{name}", capabilities=["tools"],
                             context_window=128000, max_output_tokens=4096, prices=prices)
    failover = pb.Failover(attempts=3, attempt_timeout_s=2, total_timeout_s=4, on=["connect", "timeout", "5xx", "429"])
    snap.routes.add(name="chat", deployments=["gpt-eu1", "gpt-eu2"], strategy="priority", failover=failover)
    # The US deployment is the cheapest, listed first: only residency keeps acme's requests away from it.
    snap.routes.add(name="resident", deployments=["gpt-us", "gpt-eu1", "gpt-eu2"], strategy="cheapest",
                    failover=failover)
    snap.routes.add(name="fast", deployments=["gpt-eu1", "gpt-eu2"], strategy="latency", failover=failover)
    return snap


@dataclass
class Gateway:
    url: str
    key: str
    health: Health

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)


@asynccontextmanager
async def gateway(snap: pb.Snapshot, key: str, *, health: Health | None = None,
                  retry_budget: RetryBudget | None = None, records: Records | None = None) -> AsyncIterator[Gateway]:
    holder = SnapshotHolder()
    assert holder.install(snap) is None
    health = health or Health(HealthSettings(eject_after=2, base_ejection_s=0.3, max_ejection_s=1.0))
    app = create_app(DataPlaneSettings(port=0), holder, health=health, retry_budget=retry_budget, records=records)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield Gateway(f"http://127.0.0.1:{runner.addresses[0][1]}", key, health)
    finally:
        await runner.cleanup()


def new_key() -> str:
    return generate_key()


async def settle() -> None:
    await asyncio.sleep(0)


@asynccontextmanager
async def chat_upstream(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A one-off upstream on loopback whose ``POST /v1/chat/completions`` is ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.05)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()
