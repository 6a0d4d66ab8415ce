"""Cheapest *capable*: a deployment qualifies only if its context window holds the estimated prompt plus the
requested output. Pure: ``decide`` over a compiled snapshot, no sockets."""

from __future__ import annotations

import orjson
import pytest

from controlplane.policy.compile import compile_region
from dataplane.core.decide import RequestFacts, RoutePlan, decide
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Runtime
from tests.core.policy_docs import api_key, model, policy_of, provider, route, tenant
from tollway.keyformat import generate_key, hash_key

pytestmark = pytest.mark.pure

KEY = generate_key()


def runtime() -> Runtime:
    docs = [
        provider("p", "eu"),
        model("small", "p", inp="0.1", out="0.1", contextWindow=1_000),
        model("big", "p", inp="5", out="5", contextWindow=50_000),
        route("chat", "small", "big"),
        tenant("t", "eu"),
        api_key("k", "t", digest=hash_key(KEY).hex()),
    ]
    return Runtime.from_snapshot(compile_region(policy_of(*docs), "eu"))


@pytest.mark.parametrize(
    ("prompt_bytes", "max_tokens", "expected"),
    [
        (100, None, ["small", "big"]),         # fits both: the cheapest first
        (100, 990, ["big"]),                   # the requested output does not fit the small window
        (8_000, None, ["big"]),                # ~2,000 prompt tokens: only the big window holds it
        (8_000, 49_000, "context_length_exceeded"),
        (400_000, None, "context_length_exceeded"),
    ],
)
def test_only_deployments_whose_window_holds_the_request_are_candidates(
        prompt_bytes: int, max_tokens: int | None, expected: list[str] | str) -> None:
    body: dict[str, object] = {"model": "chat", "messages": [{"role": "user", "content": "x" * prompt_bytes}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    plan = decide(RequestFacts(runtime(), f"Bearer {KEY}", orjson.dumps(body), now=0.0))
    if isinstance(expected, str):
        assert isinstance(plan, ApiError)
        assert (plan.status, plan.code, plan.param) == (400, expected, "messages")
    else:
        assert isinstance(plan, RoutePlan)
        assert [d.name for d in plan.candidates] == expected
