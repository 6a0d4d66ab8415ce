"""What the API-surface end-to-end tests (``test_responses_e2e.py``, ``test_surfaces_e2e.py``) run against: the
hand-built snapshot (the ``mock``, ``openai`` and ``anthropic`` providers, their deployments and routes),
``data_plane`` (a real data plane on a loopback socket, with the limits gate and a spool) and the ``World`` a test
drives. The ``world`` and ``client`` fixtures (``conftest.py``) start it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import openai

from tests.dataplane.in_process import ListSpool, in_process_data_plane
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tollway.keyformat import hash_key
from tollway.pb import snapshot_pb2 as pb

OPENAI_TOKEN = "sk-fake-surfaces-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-surfaces-0123456789"
OPENAI_ENV = "TOLLWAY_TEST_SURFACES_OPENAI"
ANTHROPIC_ENV = "TOLLWAY_TEST_SURFACES_ANTHROPIC"
MOCK_DIMENSIONS = 16
FAKE_DIMENSIONS = 12


@dataclass
class World:
    url: str  # the data plane, no path
    key: str
    fake: FakeOpenAI
    claude: FakeAnthropic
    spool: ListSpool
    backup: FakeOpenAI  # a second OpenAI-compatible server, first in the "pair" route

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)

    def sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)

    def fake_requests(self, path: str) -> list[dict[str, Any]]:
        return [r.body for r in self.fake.requests if r.path == path]


def snapshot(key: str, openai_url: str, anthropic_url: str, backup_url: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-surfaces", region="eu")
    snap.tenants.add(name="acme", regions=["eu"])
    snap.keys.add(id="ok", hash=hash_key(key), tenant="acme")
    snap.providers.add(name="mock", type="mock", region="eu")
    snap.providers.add(name="oai", type="openai", base_url=openai_url, region="eu", credential_env=OPENAI_ENV,
                       connect_timeout_s=1, read_timeout_s=5)
    snap.providers.add(name="oai-backup", type="openai", base_url=backup_url, region="eu", credential_env=OPENAI_ENV,
                       connect_timeout_s=1, read_timeout_s=5)
    snap.providers.add(name="claude", type="anthropic", base_url=anthropic_url, region="eu",
                       credential_env=ANTHROPIC_ENV, connect_timeout_s=1, read_timeout_s=5)
    prices = pb.Prices(input=1_000_000, output=2_000_000, cached_input=500_000)
    chat = {"capabilities": ["tools", "json_mode"], "context_window": 128_000, "max_output_tokens": 4096,
            "prices": prices}
    # As `gatectl up` rewrites a policy: the catalog's `serves` kept, the provider made a mock.
    snap.deployments.add(name="mock-chat", provider="mock", upstream_model="mock-1",
                         surfaces=["chat", "completions", "responses"], **chat)
    snap.deployments.add(name="fake-chat", provider="oai", upstream_model="gpt-4o-mini",
                         surfaces=["chat", "completions", "responses"], **chat)
    snap.deployments.add(name="fake-chat-only", provider="oai", upstream_model="gpt-4o-mini", surfaces=["chat"],
                         **chat)
    snap.deployments.add(name="backup-chat", provider="oai-backup", upstream_model="gpt-4o-mini",
                         surfaces=["chat", "responses"], **chat)
    snap.deployments.add(name="mock-embed", provider="mock", upstream_model="mock-embed", context_window=8191,
                         prices=prices, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="mock", dimensions=MOCK_DIMENSIONS))
    snap.deployments.add(name="fake-embed", provider="oai", upstream_model="text-embedding-3-small",
                         context_window=8191, prices=prices, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="te3", dimensions=FAKE_DIMENSIONS))
    free = pb.Prices(input=0, output=0, cached_input=0)
    snap.deployments.add(name="mock-mod", provider="mock", upstream_model="omni-moderation-latest",
                         context_window=32768, prices=free, surfaces=["moderations"])
    snap.deployments.add(name="fake-mod", provider="oai", upstream_model="omni-moderation-latest",
                         context_window=32768, prices=free, surfaces=["moderations"])
    snap.deployments.add(name="haiku", provider="claude", upstream_model="claude-3-5-haiku-20241022",
                         capabilities=["tools"], context_window=200_000, max_output_tokens=8192, prices=prices,
                         surfaces=["chat", "count_tokens"])
    failover = pb.Failover(attempts=1, attempt_timeout_s=5, total_timeout_s=5, on=["connect"])
    for name, deployment, kind in (("mock", "mock-chat", "chat"), ("fake", "fake-chat", "chat"),
                                   ("fake-translated", "fake-chat-only", "chat"),
                                   ("mock-embed", "mock-embed", "embeddings"),
                                   ("fake-embed", "fake-embed", "embeddings"),
                                   ("mock-moderation", "mock-mod", "chat"), ("fake-moderation", "fake-mod", "chat"),
                                   ("claude", "haiku", "chat")):
        snap.routes.add(name=name, kind=kind, deployments=[deployment], strategy="priority", failover=failover)
    snap.routes.add(name="pair", deployments=["backup-chat", "fake-chat"], strategy="priority",
                    failover=pb.Failover(attempts=2, attempt_timeout_s=5, total_timeout_s=5, on=["5xx"]))
    return snap


@asynccontextmanager
async def data_plane(snap: pb.Snapshot) -> AsyncIterator[tuple[str, ListSpool]]:
    async with in_process_data_plane(snap, limits=True) as dp:
        yield dp.url, dp.spool
