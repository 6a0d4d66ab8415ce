"""What the Google end-to-end tests (``test_google_chat_e2e.py``, ``test_google_embeddings_e2e.py``,
``test_google_failures_e2e.py``) run against: the data plane's snapshot (Gemini API and Vertex AI providers,
deployments and routes pointing at the fakes), the ``World`` a test drives (the data plane's address and key, the
fakes, the spooled usage records, the clients), the credentials it must never leak and the helpers those modules
share (``CHAT_MODELS``, ``assert_no_secret``, ``path_of``, ``record``). The ``google_world`` fixture
(``conftest.py``) starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anthropic
import openai

from tests.dataplane.in_process import ListSpool
from tests.fakes.google_upstream import FakeGemini, FakeVertex
from tollway.keyformat import hash_key
from tollway.pb import snapshot_pb2 as pb
from tollway.pb import usage_pb2 as upb

API_KEY = "AIza-e2e-gemini-key-0123456789abcdef"
WRONG_KEY = "AIza-e2e-wrong-key-fedcba9876543210"
PROJECT = "tollway-e2e"
LOCATION = "europe-west4"
FLASH = "gemini-2.5-flash"
PRICES = pb.Prices(input=1_000_000, output=2_000_000, cached_input=250_000, reasoning_output=3_000_000)
CHAT_MODELS = ["flash", "vflash"]  # the Gemini API's deployment, Vertex's
GOOGLE_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
              "GOOGLE_CLOUD_LOCATION", "GOOGLE_CLOUD_QUOTA_PROJECT", "GCE_METADATA_HOST", "GCE_METADATA_IP")


@dataclass
class World:
    url: str
    key: str
    gemini: FakeGemini
    vertex: FakeVertex
    spool: ListSpool
    _openai: openai.AsyncOpenAI | None = None
    _anthropic: anthropic.AsyncAnthropic | None = None

    def client(self) -> openai.AsyncOpenAI:
        if self._openai is None:
            self._openai = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)
        return self._openai

    def anthropic(self) -> anthropic.AsyncAnthropic:
        if self._anthropic is None:
            self._anthropic = anthropic.AsyncAnthropic(base_url=self.url, api_key=self.key, max_retries=0, timeout=10)
        return self._anthropic

    def fake(self, model: str) -> FakeGemini | FakeVertex:
        return self.vertex if model.startswith("v") else self.gemini

    def secrets(self) -> list[str]:
        assert self.vertex.service_account is not None
        key_lines = [line for line in self.vertex.service_account.private_key_pem.splitlines() if "-----" not in line]
        return [API_KEY, WRONG_KEY, *self.vertex.tokens, *key_lines]

    async def close(self) -> None:
        if self._openai is not None:
            await self._openai.close()
        if self._anthropic is not None:
            await self._anthropic.close()


def assert_no_secret(world: World, *texts: Any) -> None:
    for text in texts:
        shown = str(text)
        for secret in world.secrets():
            assert secret not in shown, "a credential reached a client"


def path_of(model: str, method: str) -> str:
    if model.startswith("v"):
        return f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{FLASH}:{method}"
    return f"/v1beta/models/{FLASH}:{method}"


def record(world: World) -> upb.UsageRecord:
    return world.spool.records[-1]


def snapshot(gemini: FakeGemini, vertex: FakeVertex, key: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-google", region="eu")
    snap.tenants.add(name="acme", projects=["web"], regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme", hint="h")
    timeouts = {"connect_timeout_s": 1.0, "read_timeout_s": 3.0}
    snap.providers.add(name="gemini", type="gemini", base_url=gemini.base_url, credential_env="TEST_GEMINI_KEY",
                       region="eu", **timeouts)
    snap.providers.add(name="gemini-wrong-key", type="gemini", base_url=gemini.base_url,
                       credential_env="TEST_GEMINI_WRONG_KEY", region="eu", **timeouts)
    vertex_common = {"type": "vertex", "base_url": vertex.base_url, "gcp_project": PROJECT,
                     "gcp_location": LOCATION, "region": "eu", **timeouts}
    snap.providers.add(name="vertex", credential_env="TEST_VERTEX_SA", **vertex_common)
    snap.providers.add(name="vertex-unset", credential_env="TEST_VERTEX_SA_UNSET", **vertex_common)
    snap.providers.add(name="vertex-untrusted", credential_env="TEST_VERTEX_SA_UNTRUSTED", **vertex_common)
    chat = {"capabilities": ["tools", "vision", "json_mode"], "context_window": 1_000_000, "max_output_tokens": 1024,
            "prices": PRICES, "surfaces": ["chat", "count_tokens"]}
    snap.deployments.add(name="flash", provider="gemini", upstream_model=FLASH, **chat)
    snap.deployments.add(name="g3", provider="gemini", upstream_model="gemini-3-pro-preview", **chat)
    snap.deployments.add(name="flash-wrong-key", provider="gemini-wrong-key", upstream_model=FLASH, **chat)
    snap.deployments.add(name="vflash", provider="vertex", upstream_model=FLASH, **chat)
    snap.deployments.add(name="vflash-unset", provider="vertex-unset", upstream_model=FLASH, **chat)
    snap.deployments.add(name="vflash-untrusted", provider="vertex-untrusted", upstream_model=FLASH, **chat)
    snap.deployments.add(name="g-embed", provider="gemini", upstream_model="gemini-embedding-001",
                         context_window=2048, prices=PRICES, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="gemini-embedding-768", dimensions=768))
    snap.deployments.add(name="v-embed", provider="vertex", upstream_model="text-embedding-005",
                         context_window=2048, prices=PRICES, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="text-embedding-005", dimensions=768))
    failover = pb.Failover(attempts=2, attempt_timeout_s=5, total_timeout_s=8, on=["connect", "5xx", "429"])
    for name, deployments, kind in (("flash", ["flash"], "chat"), ("vflash", ["vflash"], "chat"),
                                    ("g3", ["g3"], "chat"), ("flash-wrong-key", ["flash-wrong-key"], "chat"),
                                    ("vflash-unset", ["vflash-unset"], "chat"),
                                    ("vflash-untrusted", ["vflash-untrusted"], "chat"),
                                    ("flash-then-vertex", ["flash", "vflash"], "chat"),
                                    ("g-embed", ["g-embed"], "embeddings"), ("v-embed", ["v-embed"], "embeddings")):
        snap.routes.add(name=name, kind=kind, deployments=deployments, strategy="priority", failover=failover)
    return snap
