"""Builders of policy documents for tests: the smallest valid document of each kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controlplane.policy.compile import AnyResource, PolicySet
from controlplane.policy.resources import parse_resource

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tollway.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def provider(name: str, region: str = "eu", type_: str = "openai", base_url: str = "http://127.0.0.1:1/v1",
             **extra: Any) -> dict[str, Any]:
    return doc("Provider", name, type=type_, baseUrl=base_url, region=region, **extra)


def model(name: str, provider_name: str, inp: str = "1", out: str = "2", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provider": provider_name, "upstreamModel": name, "contextWindow": 8192, "maxOutputTokens": 1024,
        "pricing": {"inputPerMillion": inp, "outputPerMillion": out},
    }
    spec.update(extra)
    return doc("Model", name, **spec)


def route(name: str, *models: str, **extra: Any) -> dict[str, Any]:
    return doc("Route", name, models=list(models), **extra)


def tenant(name: str, *regions: str, projects: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return doc("Tenant", name, regions=list(regions), projects=[{"name": p} for p in projects], **extra)


def api_key(name: str, tenant_name: str, digest: str = "ab" * 32, **extra: Any) -> dict[str, Any]:
    return doc("ApiKey", name, tenant=tenant_name, hash=f"sha256:{digest}", hint="tw_...abcd", **extra)


def policy_of(*docs: dict[str, Any]) -> PolicySet:
    return PolicySet.of(parse_resource(d) for d in docs)


def example_resources() -> list[AnyResource]:
    """Every resource of the repository's example policy (policies/)."""
    out: list[AnyResource] = []
    for path in sorted(POLICIES.rglob("*.yaml")):
        out.extend(parse_resource(d) for d in yaml.safe_load_all(path.read_text()) if d)
    return out
