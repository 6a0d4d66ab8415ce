"""The compiler is pure: these tests need no event loop, no store, no sockets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from controlplane.policy.compile import PolicySet, check_references, compile_policy, compile_region
from tests.core.policy_docs import api_key, example_resources, model, policy_of, provider, route, tenant

pytestmark = pytest.mark.pure

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def base_policy() -> list[dict[str, object]]:
    return [
        provider("p-eu", "eu"), provider("p-us", "us"),
        model("m-eu", "p-eu", inp="0.15", out="0.60"), model("m-us", "p-us"),
        route("chat", "m-eu", "m-us"),
        tenant("eu-only", "eu", projects=("a",)), tenant("both", "eu", "us"), tenant("us-only", "us"),
        api_key("k1", "eu-only", project="a"),
    ]


@pytest.mark.parametrize(
    ("docs", "expected"),
    [
        ([model("m", "nope")], ["Model/m: spec.provider: Provider 'nope' does not exist"]),
        ([provider("p"), model("m", "p"), route("r", "m", "ghost")],
         ["Route/r: spec.models[1]: Model 'ghost' does not exist"]),
        ([api_key("k", "nobody")], ["ApiKey/k: spec.tenant: Tenant 'nobody' does not exist"]),
        ([tenant("t", "eu", projects=("a",)), api_key("k", "t", project="b")],
         ["ApiKey/k: spec.project: project 'b' is not a project of tenant 't'"]),
        ([tenant("t", "eu", routes=["missing"])], ["Tenant/t: spec.routes[0]: Route 'missing' does not exist"]),
        (base_policy(), []),
    ],
)
def test_check_references_names_object_and_field(docs: list[dict[str, object]], expected: list[str]) -> None:
    assert [str(e) for e in check_references(policy_of(*docs))] == expected


def test_region_snapshot_holds_only_what_its_tenants_may_use() -> None:
    snaps = compile_policy(policy_of(*base_policy()))
    assert sorted(snaps) == ["eu", "us"]
    eu, us = snaps["eu"], snaps["us"]
    assert [t.name for t in eu.tenants] == ["both", "eu-only"]
    assert [t.name for t in us.tenants] == ["both", "us-only"]
    # "both" allows us, so the eu snapshot carries the us deployment for it; data planes filter per tenant.
    assert [d.name for d in eu.deployments] == ["m-eu", "m-us"]
    assert [k.id for k in eu.keys] == ["k1"] and [k.id for k in us.keys] == []


def test_eu_only_policy_never_ships_a_us_deployment() -> None:
    docs = [d for d in base_policy() if d["metadata"] != {"name": "both"}]
    eu = compile_region(policy_of(*docs), "eu")
    assert {p.region for p in eu.providers} == {"eu"}
    assert [d.name for d in eu.deployments] == ["m-eu"]
    assert [list(r.deployments) for r in eu.routes] == [["m-eu"]]


def test_prices_are_integer_micro_dollars_per_million() -> None:
    eu = compile_region(policy_of(*base_policy()), "eu")
    prices = {d.name: (d.prices.input, d.prices.output, d.prices.cached_input) for d in eu.deployments}
    assert prices["m-eu"] == (150_000, 600_000, 150_000)


def test_version_is_a_content_hash() -> None:
    a = compile_region(policy_of(*base_policy()), "eu")
    b = compile_region(policy_of(*reversed(base_policy())), "eu")
    assert a.version == b.version and len(a.version) == 16
    changed = base_policy()
    changed[2] = model("m-eu", "p-eu", inp="0.16", out="0.60")
    assert compile_region(policy_of(*changed), "eu").version != a.version


def test_key_hash_travels_as_bytes_never_the_secret() -> None:
    eu = compile_region(policy_of(*base_policy()), "eu")
    assert eu.keys[0].hash == bytes.fromhex("ab" * 32)


def test_example_policy_is_consistent() -> None:
    policy = PolicySet.of(example_resources())
    assert check_references(policy) == []
    snaps = compile_policy(policy)
    assert sorted(snaps) == ["eu", "us"]
    # payments is EU-only: no deployment of its routes in eu may be served from a us provider for it,
    # and the eu snapshot holds us providers only because "search" allows us.
    assert "payments" in [t.name for t in snaps["eu"].tenants]
    assert "payments" not in [t.name for t in snaps["us"].tenants]


@pytest.mark.parametrize("region", ["eu", "us"])
def test_example_policy_matches_golden_snapshot(region: str) -> None:
    snap = compile_policy(PolicySet.of(example_resources()))[region]
    got = MessageToDict(snap, preserving_proto_field_name=True)
    path = GOLDEN / f"snapshot-{region}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text()), "run with UPDATE_GOLDEN=1 and review the diff"


def test_budgets_and_rate_limits_compile_to_integers() -> None:
    docs = base_policy()
    docs[5] = tenant(
        "eu-only", "eu", projects=(),
        budget={"monthlyUsd": "12.345678", "softPercent": 75, "safeAllowanceUsd": "0.5"},
        perUserBudget={"monthlyUsd": "1"},
        rateLimits={"requestsPerMinute": 60, "perUser": {"tokensPerMinute": 1000},
                    "perModel": [{"route": "chat", "requestsPerMinute": 5}]},
        logging={"content": "hashed"},
    )
    docs[8] = api_key("k1", "eu-only", budget={"monthlyUsd": "2"}, rateLimits={"tokensPerMinute": 10})
    eu = compile_region(policy_of(*docs), "eu")
    t = next(t for t in eu.tenants if t.name == "eu-only")
    assert (t.budget.monthly_micros, t.budget.soft_percent, t.budget.safe_allowance_micros) == (12_345_678, 75, 500_000)
    assert t.per_user_budget.monthly_micros == 1_000_000
    assert (t.rate_limit.requests_per_minute, t.rate_limit.tokens_per_minute) == (60, 0)
    assert t.per_user_rate_limit.tokens_per_minute == 1000
    assert [(r.route, r.limit.requests_per_minute) for r in t.per_route_rate_limits] == [("chat", 5)]
    assert (t.logging.content, t.logging.retention_days) == ("hashed", 90)
    assert eu.keys[0].budget.monthly_micros == 2_000_000 and eu.keys[0].rate_limit.tokens_per_minute == 10
    other = next(t for t in eu.tenants if t.name == "both")
    assert not other.HasField("budget") and not other.HasField("rate_limit")


def test_rate_limit_on_a_missing_route_is_a_reference_error() -> None:
    docs = [tenant("t", "eu", rateLimits={"perModel": [{"route": "ghost", "requestsPerMinute": 1}]})]
    assert [str(e) for e in check_references(policy_of(*docs))] == [
        "Tenant/t: spec.rateLimits.perModel[0].route: Route 'ghost' does not exist"]


@pytest.mark.parametrize(("profile", "region", "refused"), [
    ("eu.anthropic.claude-sonnet-4-20250514-v1:0", "eu", False),
    ("eu.anthropic.claude-sonnet-4-20250514-v1:0", "us", True),
    ("us.amazon.nova-lite-v1:0", "us-east", False),
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "eu", True),  # would send EU data anywhere
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "global", False),
    ("anthropic.claude-3-haiku-20240307-v1:0", "eu", False),  # an in-region model id: no profile to check
])
def test_a_bedrock_inference_profile_must_stay_in_its_providers_region(profile: str, region: str,
                                                                      refused: bool) -> None:
    policy = policy_of(provider("bedrock", region, type_="bedrock", awsRegion="eu-central-1"),
                       model("m", "bedrock", upstreamModel=profile), route("r", "m"), tenant("t", region))
    problems = [p for p in check_references(policy) if p.field == "spec.upstreamModel"]
    assert bool(problems) is refused, problems
    if refused:
        assert "region" in problems[0].message


def test_providers_of_the_clouds_get_their_default_endpoints() -> None:
    policy = policy_of(provider("b", "eu", type_="bedrock", base_url="", awsRegion="eu-central-1"),
                       provider("g", "us", type_="gemini", base_url=""),
                       provider("v", "eu", type_="vertex", base_url="", gcpProject="p", gcpLocation="europe-west4"),
                       tenant("t", "eu", "us"))
    urls = {p.name: p.base_url for p in compile_region(policy, "eu").providers}
    assert urls == {"b": "https://bedrock-runtime.eu-central-1.amazonaws.com",
                    "g": "https://generativelanguage.googleapis.com",
                    "v": "https://europe-west4-aiplatform.googleapis.com"}
