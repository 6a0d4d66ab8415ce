"""A hand-built snapshot for data plane tests: two tenants, three providers in two regions, four keys.

- tenant ``acme`` (regions: eu; every route; project ``web``), tenant ``globex`` (regions: eu, us; route ``chat``)
- providers ``up-eu`` (openai, eu), ``up-us`` (openai, us, cheaper), ``mock-eu`` (mock, eu)
- routes ``chat`` (cheapest: gpt-eu, gpt-us), ``mock`` (priority: mock-small), ``us-only`` (gpt-us),
  ``backup`` (priority: gpt-eu then gpt-eu2, failover on everything), ``split`` (weighted 1:3)
- keys ``acme-all``, ``acme-mock`` (routes: mock), ``globex`` and ``acme-expired``
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

CREDENTIAL_ENV = "TOLLWAY_TEST_UPSTREAM_KEY"
CREDENTIAL = "sk-upstream-secret-0123456789"


@dataclass(frozen=True)
class Keys:
    acme_all: str
    acme_mock: str
    globex: str
    acme_expired: str


def build_snapshot(eu_url: str = "http://127.0.0.1:9/v1", us_url: str = "http://127.0.0.1:9/v1",
                   eu2_url: str = "http://127.0.0.1:9/v1", attempts: int = 2) -> tuple[pb.Snapshot, Keys]:
    keys = Keys(generate_key(), generate_key(), generate_key(), generate_key())
    snap = pb.Snapshot(version="v-test-1", region="eu")
    snap.tenants.add(name="acme", projects=["web"], regions=["eu"])
    snap.tenants.add(name="globex", regions=["eu", "us"], routes=["chat"])
    snap.keys.add(id="acme-all", hash=hash_key(keys.acme_all), tenant="acme", project="web", hint="h")
    snap.keys.add(id="acme-mock", hash=hash_key(keys.acme_mock), tenant="acme", routes=["mock"])
    snap.keys.add(id="globex", hash=hash_key(keys.globex), tenant="globex")
    snap.keys.add(id="acme-expired", hash=hash_key(keys.acme_expired), tenant="acme", expires_at=1_000)
    common = {"credential_env": CREDENTIAL_ENV, "connect_timeout_s": 1.0, "read_timeout_s": 2.0}
    snap.providers.add(name="up-eu", type="openai", base_url=eu_url, region="eu", **common)
    snap.providers.add(name="up-eu2", type="openai", base_url=eu2_url, region="eu", **common)
    snap.providers.add(name="up-us", type="openai", base_url=us_url, region="us", **common)
    snap.providers.add(name="mock-eu", type="mock", region="eu")
    snap.deployments.add(name="gpt-eu", provider="up-eu", upstream_model="gpt-4o-mini", capabilities=["tools"],
                         context_window=128000, max_output_tokens=4096,
                         prices=pb.Prices(input=150_000, output=600_000, cached_input=75_000))
    snap.deployments.add(name="gpt-eu2", provider="up-eu2", upstream_model="gpt-4o-mini-2",
                         context_window=128000, max_output_tokens=4096,
                         prices=pb.Prices(input=100_000, output=400_000, cached_input=50_000))
    snap.deployments.add(name="gpt-us", provider="up-us", upstream_model="gpt-4o-mini-us",
                         context_window=128000, max_output_tokens=4096,
                         prices=pb.Prices(input=10_000, output=20_000, cached_input=5_000))
    snap.deployments.add(name="mock-small", provider="mock-eu", upstream_model="mock-1", context_window=8192,
                         max_output_tokens=1024, prices=pb.Prices(input=1_000_000, output=2_000_000))
    everything = pb.Failover(attempts=attempts, attempt_timeout_s=1.5, total_timeout_s=5.0,
                             on=["connect", "timeout", "5xx", "429"])
    snap.routes.add(name="chat", deployments=["gpt-eu", "gpt-us"], strategy="cheapest", failover=everything)
    snap.routes.add(name="mock", deployments=["mock-small"], strategy="priority", failover=everything)
    snap.routes.add(name="us-only", deployments=["gpt-us"], strategy="priority", failover=everything)
    snap.routes.add(name="backup", deployments=["gpt-eu", "gpt-eu2"], strategy="priority", failover=everything)
    snap.routes.add(name="split", deployments=["gpt-eu", "gpt-eu2"], strategy="weighted", weights=[1, 3],
                    failover=everything)
    return snap, keys
