"""The pure parts of staged rollouts: the user's inputs, the automatic verdict, the others' policy."""

from __future__ import annotations

import pytest

from controlplane.errors import InvalidRequest
from controlplane.rollout.stable import stable_policy
from controlplane.rollout.state import Canary, Rollout, parse_abort_rule, parse_canary, parse_duration
from controlplane.rollout.verdict import CanaryNode, Traffic, judge
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(("text", "canary"), [
    ("eu", Canary(("eu",))),
    ("eu, us", Canary(("eu", "us"))),
    ("region=eu,dataplane=dp-7", Canary(("eu",), ("dp-7",))),
])
def test_canary_selectors(text: str, canary: Canary) -> None:
    assert parse_canary(text) == canary


@pytest.mark.parametrize("text", ["", ",", "zone=eu", "dataplane="])
def test_bad_canary_selectors_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="'canary'"):
        parse_canary(text)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "10 minutes", "-5m", "1d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidRequest, match="promoteAfter"):
        parse_duration(text)


def test_abort_rules() -> None:
    assert parse_abort_rule("error-rate>2%") == pytest.approx(0.02)
    assert parse_abort_rule(" error-rate > 0.5% ") == pytest.approx(0.005)
    for bad in ("latency>2%", "error-rate>2", "error-rate>100%"):
        with pytest.raises(InvalidRequest, match="abortIf"):
            parse_abort_rule(bad)


ROLLOUT = Rollout("rollout-3", "ci", "t", 2, 3, Canary(("eu",)), promote_at=1000.0, abort_above=0.02)
ACK = CanaryNode("dp-1", "ACK", "")


@pytest.mark.parametrize(("nodes", "canary", "others", "now", "action"), [
    ([ACK], Traffic(100, 1), Traffic(100, 0), 999.0, None),  # 1 point above: within the rule, before the deadline
    ([ACK], Traffic(100, 1), Traffic(100, 0), 1000.0, "promote"),
    ([CanaryNode("dp-1", "NACK", "same hash")], Traffic(), Traffic(), 1000.0, "abort"),  # NACK wins over the deadline
    ([ACK], Traffic(100, 10), Traffic(100, 0), 1000.0, "abort"),
    ([ACK], Traffic(100, 10), Traffic(100, 9), 500.0, None),  # everyone fails alike: not the canary's fault
    ([ACK], Traffic(5, 5), Traffic(100, 0), 500.0, None),  # too few requests to judge
])
def test_verdict(nodes: list[CanaryNode], canary: Traffic, others: Traffic, now: float, action: str | None) -> None:
    verdict = judge(ROLLOUT, nodes, canary, others, now, min_requests=20)
    assert (verdict.action if verdict else None) == action


def test_no_rules_means_only_a_nack_decides() -> None:
    manual = Rollout("rollout-3", "ci", "t", 2, 3, Canary(("eu",)))
    assert judge(manual, [ACK], Traffic(100, 100), Traffic(100, 0), 1e12, 20) is None
    assert judge(manual, [CanaryNode("dp-1", "NACK", "x")], Traffic(), Traffic(), 0.0, 20) is not None


def test_rollout_record_round_trips() -> None:
    assert Rollout.from_json(ROLLOUT.to_json()) == ROLLOUT


def test_the_others_run_the_base_policy_with_current_secrets() -> None:
    common = [provider("p", "eu", type_="mock"), route("chat", "m"), tenant("acme", "eu")]
    base = policy_of(*common, model("m", "p", inp="1"), api_key("kept", "acme", digest="aa" * 32),
                     api_key("rotated", "acme", digest="bb" * 32))
    current = policy_of(*common, model("m", "p", inp="9"), api_key("kept", "acme", digest="aa" * 32),
                        api_key("rotated", "acme", digest="cc" * 32, revokedAt=5),
                        api_key("new", "acme", digest="dd" * 32))
    stable = stable_policy(base, current)
    assert stable.models["m"] == base.models["m"]  # the rollout's change is not there
    assert stable.keys["kept"] is base.keys["kept"]
    assert stable.keys["rotated"].spec.hash == "sha256:" + "cc" * 32 and stable.keys["rotated"].spec.revoked_at == 5
    assert "new" not in stable.keys  # created by the rollout: the base did not have it
