"""What the Bedrock end-to-end tests (``test_bedrock_chat_e2e.py``, ``test_bedrock_invoke_e2e.py``) run against:
the AWS credentials the data plane is given and the fake expects, the data plane's snapshot (Bedrock providers,
deployments and routes pointing at the fake), the ``World`` a test drives (the data plane's address and key, the
fake, the spooled usage records, the shared credentials file) and ``assert_no_secret``, which both modules use. The
``bedrock_world`` fixture (``conftest.py``) starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai

from tests.dataplane.in_process import ListSpool
from tests.fakes.bedrock_upstream import FakeBedrock
from tollway.keyformat import hash_key
from tollway.pb import snapshot_pb2 as pb

ACCESS_KEY = "AKIAE2ETESTKEYID0001"
SECRET_KEY = "e2eSecretKey/0123456789abcdefghijklmnopqrs"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjE2eSessionToken0123456789=="
API_KEY = "bedrock-api-key-e2e-0123456789"
REGION = "eu-central-1"
CLAUDE = "eu.anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
SECRETS = (SECRET_KEY, SESSION_TOKEN)


@dataclass
class World:
    url: str
    key: str
    fake: FakeBedrock
    spool: ListSpool
    credentials_file: Path
    _openai: openai.AsyncOpenAI | None = None

    def client(self) -> openai.AsyncOpenAI:
        if self._openai is None:
            self._openai = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=10)
        return self._openai

    def anthropic(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=self.key, max_retries=0, timeout=10)

    async def close(self) -> None:
        if self._openai is not None:
            await self._openai.close()

    def operations(self) -> list[str]:
        return [r.operation for r in self.fake.requests]


def assert_no_secret(*texts: Any) -> None:
    for text in texts:
        shown = str(text)
        for secret in (*SECRETS, ACCESS_KEY):
            assert secret not in shown


def snapshot(endpoint: str, key: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-bedrock", region="eu")
    snap.tenants.add(name="acme", projects=["web"], regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme", hint="h")
    common = {"type": "bedrock", "base_url": endpoint, "aws_region": REGION, "region": "eu",
              "connect_timeout_s": 1.0, "read_timeout_s": 2.0}
    snap.providers.add(name="bedrock-eu", **common)
    snap.providers.add(name="bedrock-key", credential_env="TOLLWAY_TEST_BEDROCK_API_KEY", **common)
    snap.providers.add(name="bedrock-profile", aws_profile="e2e", **common)
    snap.providers.add(name="bedrock-no-profile", aws_profile="absent", **common)
    prices = pb.Prices(input=1_000_000, output=2_000_000, cached_input=100_000)
    chat = {"capabilities": ["tools", "vision", "json_mode"], "context_window": 200_000, "max_output_tokens": 1024,
            "prices": prices}
    snap.deployments.add(name="claude", provider="bedrock-eu", upstream_model=CLAUDE, **chat)
    snap.deployments.add(name="nova", provider="bedrock-eu", upstream_model=NOVA, **chat)
    snap.deployments.add(name="nova-by-key", provider="bedrock-key", upstream_model=NOVA, **chat)
    snap.deployments.add(name="nova-by-profile", provider="bedrock-profile", upstream_model=NOVA, **chat)
    snap.deployments.add(name="nova-no-profile", provider="bedrock-no-profile", upstream_model=NOVA, **chat)
    snap.deployments.add(name="nova-pro", provider="bedrock-eu", upstream_model="amazon.nova-pro-v1:0", **chat)
    snap.deployments.add(name="titan", provider="bedrock-eu", upstream_model="amazon.titan-embed-text-v2:0",
                         context_window=8192, prices=prices, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="titan-v2-512", dimensions=512))
    snap.deployments.add(name="cohere", provider="bedrock-eu", upstream_model="cohere.embed-english-v3",
                         context_window=512, prices=prices, surfaces=["embeddings"],
                         embedding=pb.Embedding(family="cohere-v3", dimensions=1024))
    failover = pb.Failover(attempts=2, attempt_timeout_s=3, total_timeout_s=5, on=["connect", "5xx", "429"])
    for name, deployments, kind in (("claude", ["claude"], "chat"), ("nova", ["nova"], "chat"),
                                    ("nova-by-key", ["nova-by-key"], "chat"),
                                    ("nova-by-profile", ["nova-by-profile"], "chat"),
                                    ("nova-no-profile", ["nova-no-profile"], "chat"),
                                    ("nova-then-claude", ["nova", "claude"], "chat"),
                                    ("disabled-then-nova", ["nova-pro", "nova"], "chat"),
                                    ("titan", ["titan"], "embeddings"), ("cohere", ["cohere"], "embeddings")):
        snap.routes.add(name=name, kind=kind, deployments=deployments, strategy="priority", failover=failover)
    return snap
