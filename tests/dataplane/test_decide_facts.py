"""The decision core over facts (``decide_route``) gives the plans ``decide`` gives over the body: the split that
lets a replay decide recorded requests with the data planes' own function. A table over one runtime; no sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.core.decide import Denial, RequestFacts, RoutePlan, decide, decide_route, facts_request
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Runtime
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot

pytestmark = pytest.mark.pure

NOW = 2_000_000_000.0
TOOL = {"type": "function", "function": {"name": "f", "parameters": {}}}


@pytest.fixture(scope="module")
def world() -> tuple[Runtime, Keys]:
    snap, keys = build_snapshot()
    return Runtime.from_snapshot(snap, {CREDENTIAL_ENV: CREDENTIAL}), keys


CASES: list[tuple[str, dict[str, Any], str, float]] = [
    # name, request fields, key, pick
    ("served", {}, "acme_all", 0.0),
    ("weighted, other draw", {}, "acme_all", 0.9),
    ("with max_tokens", {"max_tokens": 5}, "acme_all", 0.0),
    ("streamed", {"stream": True}, "acme_all", 0.0),
    ("another tenant's candidates", {}, "globex", 0.0),
    ("unknown model", {"model": "nope"}, "acme_all", 0.0),
    ("route not allowed for key", {"model": "chat"}, "acme_mock", 0.0),
    ("route not allowed for tenant", {"model": "mock"}, "globex", 0.0),
    ("residency", {"model": "us-only"}, "acme_all", 0.0),
    ("capability missing", {"model": "mock", "tools": [TOOL]}, "acme_all", 0.0),
    ("context too small", {"messages": [{"role": "user", "content": "x" * 400_000}]}, "acme_all", 0.0),
]


def _shape(decided: RoutePlan | ApiError) -> tuple[Any, ...]:
    if isinstance(decided, ApiError):
        return ("refused", decided.status, decided.code, decided.param, decided.message)
    return ("plan", decided.key.id, decided.route.name, tuple(d.name for d in decided.candidates))


@pytest.mark.parametrize(("name", "fields", "key", "pick"), CASES, ids=[c[0] for c in CASES])
def test_deciding_the_recorded_facts_gives_the_plan_of_the_body(
        world: tuple[Runtime, Keys], name: str, fields: dict[str, Any], key: str, pick: float) -> None:
    runtime, keys = world
    payload: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}
    full = decide(RequestFacts(runtime, f"Bearer {getattr(keys, key)}", orjson.dumps(payload), NOW, pick))
    # What a usage record keeps of the request: the key id and the body-derived facts, never the body.
    if isinstance(full, RoutePlan):
        caller, request = full.key, full.request
    else:
        assert isinstance(full, Denial) and full.key is not None and full.request is not None, full
        caller, request = full.key, full.request
    facts = facts_request(request.model, request.surface, request.needs, request.estimated_prompt_tokens,
                          request.max_tokens, request.stream)
    assert _shape(decide_route(runtime, caller, facts, pick)) == _shape(full)


def test_a_refusal_by_policy_says_whose_request_it_was_and_one_of_the_body_does_not(
        world: tuple[Runtime, Keys]) -> None:
    runtime, keys = world
    by_policy = decide(RequestFacts(runtime, f"Bearer {keys.acme_mock}", orjson.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}), NOW))
    assert isinstance(by_policy, Denial) and by_policy.code == "model_not_allowed"
    assert by_policy.key is not None and by_policy.request is not None
    assert (by_policy.key.tenant.name, by_policy.request.model, by_policy.request.max_tokens) == ("acme", "chat", 7)
    malformed = decide(RequestFacts(runtime, f"Bearer {keys.acme_all}", b'{"model": "chat", "messages": []}', NOW))
    assert isinstance(malformed, ApiError) and not isinstance(malformed, Denial)
