"""decide(): authentication, validation, authorization and planning, as a table over one runtime. No sockets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.core.decide import RequestFacts, RoutePlan, authenticate, decide
from dataplane.errors import ApiError
from dataplane.snapshot.runtime import Runtime
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys, build_snapshot
from tollway.keyformat import generate_key

pytestmark = pytest.mark.pure

NOW = 2_000_000_000.0


@pytest.fixture(scope="module")
def world() -> tuple[Runtime, Keys]:
    snap, keys = build_snapshot()
    return Runtime.from_snapshot(snap, {CREDENTIAL_ENV: CREDENTIAL}), keys


def body(**fields: Any) -> bytes:
    payload: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    payload.update(fields)
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


def run(world: tuple[Runtime, Keys], raw: bytes, key: str = "acme_all", pick: float = 0.0,
        auth: str | None = None) -> RoutePlan | ApiError:
    rt, keys = world
    header = auth if auth is not None else f"Bearer {getattr(keys, key)}"
    return decide(RequestFacts(rt, header, raw, NOW, pick))


ERROR_CASES: list[tuple[str, dict[str, Any], str, int, str | None, str | None]] = [
    # name, request fields, key, status, code, param
    ("unknown model", {"model": "nope"}, "acme_all", 404, "model_not_found", "model"),
    ("route not allowed for key", {"model": "chat"}, "acme_mock", 403, "model_not_allowed", "model"),
    ("route not allowed for tenant", {"model": "mock"}, "globex", 403, "model_not_allowed", "model"),
    ("residency: only in a foreign region", {"model": "us-only"}, "acme_all", 403, "region_not_allowed", "model"),
    ("expired key", {}, "acme_expired", 401, "invalid_api_key", None),
    ("model missing", {"model": ...}, "acme_all", 400, None, "model"),
    ("model not a string", {"model": 3}, "acme_all", 400, None, "model"),
    ("messages empty", {"messages": []}, "acme_all", 400, None, "messages"),
    ("messages not list", {"messages": "hi"}, "acme_all", 400, None, "messages"),
    ("message not object", {"messages": ["hi"]}, "acme_all", 400, None, "messages[0]"),
    ("bad role", {"messages": [{"role": "robot", "content": "x"}]}, "acme_all", 400, None, "messages[0].role"),
    ("no content", {"messages": [{"role": "user"}]}, "acme_all", 400, None, "messages[0].content"),
    ("stream not bool", {"stream": "yes"}, "acme_all", 400, None, "stream"),
    ("max_tokens zero", {"max_tokens": 0}, "acme_all", 400, None, "max_tokens"),
    ("max_tokens bool", {"max_tokens": True}, "acme_all", 400, None, "max_tokens"),
    ("temperature too high", {"temperature": 3}, "acme_all", 400, None, "temperature"),
    # Shapes every outbound translation relied on (a number or a bool here was a 500 in hub_to_anthropic,
    # hub_to_gemini, hub_to_bedrock and the mock; found by tests/edge/test_fuzz.py).
    ("tool_calls not an array", {"messages": [{"role": "assistant", "content": None, "tool_calls": 100.0}]},
     "acme_all", 400, None, "messages[0].tool_calls"),
    ("tool_calls of strings", {"messages": [{"role": "assistant", "content": "x", "tool_calls": ["call"]}]},
     "acme_all", 400, None, "messages[0].tool_calls"),
    ("tool_choice function not an object", {"tool_choice": {"type": "function", "function": True}}, "acme_all",
     400, None, "tool_choice"),
    ("tool_choice a number", {"tool_choice": 1}, "acme_all", 400, None, "tool_choice"),
    ("reasoning_effort not a string", {"reasoning_effort": ["low"]}, "acme_all", 400, None, "reasoning_effort"),
    ("api_base at top", {"api_base": "http://evil"}, "acme_all", 400, "forbidden_parameter", "api_base"),
    ("api_key at top", {"api_key": "sk-x"}, "acme_all", 400, "forbidden_parameter", "api_key"),
    ("base_url nested", {"metadata": {"x": [{"base_url": "http://evil"}]}}, "acme_all", 400,
     "forbidden_parameter", "metadata.x[0].base_url"),
    ("extra_headers", {"extra_headers": {"a": "b"}}, "acme_all", 400, "forbidden_parameter", "extra_headers"),
    ("headers in message", {"messages": [{"role": "user", "content": "x", "headers": {}}]}, "acme_all", 400,
     "forbidden_parameter", "messages[0].headers"),
    ("custom_llm_provider", {"custom_llm_provider": "azure"}, "acme_all", 400, "forbidden_parameter",
     "custom_llm_provider"),
    ("case-insensitive", {"Azure_Endpoint": "x"}, "acme_all", 400, "forbidden_parameter", "Azure_Endpoint"),
    ("tools unsupported by candidates", {"model": "mock", "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {}}}]}, "acme_all", 400, "unsupported_capability", "tools"),
]


@pytest.mark.parametrize(("fields", "key", "status", "code", "param"), [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_refusals(world: tuple[Runtime, Keys], fields: dict[str, Any], key: str, status: int, code: str | None,
                  param: str | None) -> None:
    result = run(world, body(**fields), key)
    assert isinstance(result, ApiError), result
    assert (result.status, result.param) == (status, param)
    if code is not None:
        assert result.code == code
    assert orjson.loads(result.body())["error"]["message"] == result.message


@pytest.mark.parametrize(("auth", "why"), [
    (None, "missing"), ("", "missing"), ("Basic abc", "scheme"), ("Bearer ", "empty"),
    ("Bearer sk-not-ours", "foreign format"), ("Bearer tw_" + "A" * 49, "bad checksum"),
    (f"Bearer {generate_key()}", "well formed, unknown"),
])
def test_bad_keys_are_401(world: tuple[Runtime, Keys], auth: str | None, why: str) -> None:
    rt, _ = world
    result = authenticate(rt, auth, NOW)
    assert isinstance(result, ApiError)
    assert (result.status, result.code) == (401, "invalid_api_key"), why


def test_invalid_json_is_400(world: tuple[Runtime, Keys]) -> None:
    result = run(world, b"{not json")
    assert isinstance(result, ApiError) and result.status == 400
    result = run(world, b"[1, 2]")
    assert isinstance(result, ApiError) and result.status == 400


def test_bad_key_checked_before_body(world: tuple[Runtime, Keys]) -> None:
    result = run(world, b"{not json", auth="Bearer nope")
    assert isinstance(result, ApiError) and result.status == 401


def test_schema_property_names_are_not_settings(world: tuple[Runtime, Keys]) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"organization": {"type": "string"}, "headers": {"type": "object"}}}}}
    result = run(world, body(tools=[tool]))
    assert isinstance(result, RoutePlan), result
    # ...but a banned key that is a schema keyword position is still refused.
    tool["function"]["parameters"]["api_key"] = "x"  # type: ignore[index]
    assert isinstance(run(world, body(tools=[tool])), ApiError)


def test_image_url_parts_are_allowed(world: tuple[Runtime, Keys]) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "what"},
                                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    result = run(world, body(messages=messages))
    # No deployment declares vision, so this is refused for capability, not for the "url" key.
    assert isinstance(result, ApiError) and result.code == "unsupported_capability"


def test_residency_filters_candidates(world: tuple[Runtime, Keys]) -> None:
    acme = run(world, body(), "acme_all")
    assert isinstance(acme, RoutePlan)
    assert [d.name for d in acme.candidates] == ["gpt-eu"]


def test_cheapest_orders_by_expected_cost(world: tuple[Runtime, Keys]) -> None:
    globex = run(world, body(), "globex")
    assert isinstance(globex, RoutePlan)
    assert [d.name for d in globex.candidates] == ["gpt-us", "gpt-eu"]


def test_priority_keeps_declared_order(world: tuple[Runtime, Keys]) -> None:
    plan = run(world, body(model="backup"))
    assert isinstance(plan, RoutePlan)
    assert [d.name for d in plan.candidates] == ["gpt-eu", "gpt-eu2"]


@pytest.mark.parametrize(("pick", "first"), [(0.0, "gpt-eu"), (0.24, "gpt-eu"), (0.25, "gpt-eu2"),
                                             (0.99, "gpt-eu2")])
def test_weighted_choice_follows_weights(world: tuple[Runtime, Keys], pick: float, first: str) -> None:
    plan = run(world, body(model="split"), pick=pick)
    assert isinstance(plan, RoutePlan)
    assert plan.candidates[0].name == first
    assert len(plan.candidates) == 2


def test_attempts_truncate_candidates() -> None:
    snap, keys = build_snapshot(attempts=1)
    rt = Runtime.from_snapshot(snap, {})
    plan = decide(RequestFacts(rt, f"Bearer {keys.acme_all}", body(model="backup"), NOW))
    assert isinstance(plan, RoutePlan)
    assert [d.name for d in plan.candidates] == ["gpt-eu"]


def test_stream_and_usage_flags(world: tuple[Runtime, Keys]) -> None:
    plan = run(world, body(stream=True, stream_options={"include_usage": True}, max_tokens=5))
    assert isinstance(plan, RoutePlan)
    assert plan.request.stream and plan.request.include_usage and plan.request.max_tokens == 5
    plan = run(world, body(stream=True))
    assert isinstance(plan, RoutePlan)
    assert plan.request.stream and not plan.request.include_usage
