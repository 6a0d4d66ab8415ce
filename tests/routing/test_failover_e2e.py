"""Failover, health and residency through a real data plane, fake upstreams on loopback and the openai SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from dataplane.core.accounting import Outcome
from dataplane.core.cost_bound import deployment_cost_bound
from dataplane.core.health import RetryBudget
from dataplane.record.metrics import RequestMetrics
from dataplane.record.records import Records
from dataplane.record.request_log import RequestLog
from dataplane.record.trace_context import RequestTrace
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.snapshot.runtime import Key
from dataplane.upstream.probe import HealthChecker
from tests.conftest import free_port
from tests.routing.world import (
    CREDENTIAL_ENV,
    UPSTREAM_KEY,
    Gateway,
    Upstream,
    chat_upstream,
    gateway,
    new_key,
    snapshot,
)
from tollway.prometheus import Registry

HELLO: list[Any] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def ups(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Upstream, Upstream, Upstream]]:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    eu1, eu2, us = Upstream("eu1"), Upstream("eu2"), Upstream("us")
    for u in (eu1, eu2, us):
        await u.start()
    try:
        yield eu1, eu2, us
    finally:
        for u in (eu1, eu2, us):
            await u.kill()


async def served_by(gw: Gateway, model: str = "chat") -> tuple[str, dict[str, str]]:
    raw = await gw.client().chat.completions.with_raw_response.create(model=model, messages=HELLO)
    assert raw.parse().choices[0].message.content
    return raw.headers["x-tollway-deployment"], dict(raw.headers)


async def test_upstream_killed_mid_load_is_invisible_and_traffic_returns(
        ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, _ = ups
    key = new_key()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, ups[2].base_url), key) as gw:
        errors: list[BaseException] = []
        served: list[str] = []

        async def worker(n: int) -> None:
            for _ in range(n):
                try:
                    served.append((await served_by(gw))[0])
                except openai.APIError as exc:
                    errors.append(exc)

        load = asyncio.gather(*(worker(40) for _ in range(4)))
        while len(served) < 20:
            await asyncio.sleep(0.005)
        await eu1.kill()  # mid-load: requests in flight on it lose their connection
        killed_at = len(served)
        await load
        assert errors == [], "the outage reached the client"
        assert served[:10] == ["gpt-eu1"] * 10
        assert served[-20:] == ["gpt-eu2"] * 20, "traffic moved to the other deployment"
        assert len(served) == 160 and killed_at < 160
        async with aiohttp.ClientSession() as session, session.get(gw.url + "/healthz/deployments") as resp:
            states = {d["deployment"]: d["state"] for d in (await resp.json())["deployments"]}
        assert states["gpt-eu1"] in ("ejected", "trial") and states["gpt-eu2"] == "healthy"

        await eu1.start()  # restarted at the same address
        deadline = time.monotonic() + 5
        back = ""
        while back != "gpt-eu1":
            assert time.monotonic() < deadline, "traffic never returned to the restarted deployment"
            back = (await served_by(gw))[0]
            await asyncio.sleep(0.05)
        assert [(await served_by(gw))[0] for _ in range(5)] == ["gpt-eu1"] * 5, "the breaker closed"


async def test_headers_say_who_served_why_and_after_how_many_attempts(
        ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    key = new_key()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key) as gw:
        dep, headers = await served_by(gw)
        assert (dep, headers["x-tollway-route-reason"], headers["x-tollway-attempts"]) == ("gpt-eu1", "priority", "1")
        eu1.fake.fail_status, eu1.fake.fail_times = 503, 1
        dep, headers = await served_by(gw)
        assert (dep, headers["x-tollway-route-reason"], headers["x-tollway-attempts"]) == \
            ("gpt-eu2", "failover:5xx", "2")
        eu1.fake.fail_status, eu1.fake.fail_times = 429, 1
        assert (await served_by(gw))[1]["x-tollway-route-reason"] == "failover:429"


async def test_spent_retry_budget_stops_failover(ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    key = new_key()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key,
                       retry_budget=RetryBudget(ratio=0.0, min_per_s=0.1, window_s=10)) as gw:  # one retry
        eu1.fake.fail_status, eu1.fake.fail_times = 500, 2
        assert (await served_by(gw))[1]["x-tollway-attempts"] == "2"
        with pytest.raises(openai.InternalServerError) as info:
            await served_by(gw)
        assert info.value.response.headers["x-tollway-attempts"] == "1"
        assert info.value.response.headers["x-tollway-route-reason"] == "failed:5xx"
        assert eu2.served == 1


async def test_upstream_dying_mid_stream_ends_it_with_an_error_event(
        ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    key = new_key()
    eu1.fake.die_after_chunks = 3
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key) as gw:
        received = ""
        stream = await gw.client().chat.completions.create(model="chat", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert received, "bytes had reached the client"
        assert eu2.served == 0, "never retried after the first byte"


@pytest.fixture
async def stalling_upstream() -> AsyncIterator[str]:
    """Sends two chunks, then nothing for longer than the provider's read timeout (1 s)."""
    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for text in ("Hel", "lo"):
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await asyncio.sleep(5)
        return resp

    async with chat_upstream(chat) as base_url:
        yield base_url


async def test_idle_upstream_is_cut_and_the_stream_ends_with_an_error_event(
        ups: tuple[Upstream, Upstream, Upstream], stalling_upstream: str) -> None:
    _, eu2, us = ups
    key = new_key()
    async with gateway(snapshot(key, stalling_upstream, eu2.base_url, us.base_url), key) as gw:
        started = time.monotonic()
        async with aiohttp.ClientSession() as session, session.post(
                gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": "chat", "messages": HELLO, "stream": True}) as resp:
            body = await resp.read()
        elapsed = time.monotonic() - started
        events = [e for e in body.split(b"\n\n") if e]
        assert b'"Hel"' in events[0] and b'"lo"' in body
        last = orjson.loads(events[-1].removeprefix(b"data: "))
        assert last["error"]["code"] == "upstream_timeout"
        assert 0.9 < elapsed < 3, "cut after the read timeout, not the upstream's 5 s"
        assert eu2.served == 0


async def test_latency_strategy_prefers_the_faster_deployment(ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    eu1.fake.delay_s = 0.08
    key = new_key()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key) as gw:
        served = [(await served_by(gw, "fast"))[0] for _ in range(10)]
        assert served[:2] == ["gpt-eu1", "gpt-eu2"], "each unmeasured deployment is tried once"
        assert served[2:] == ["gpt-eu2"] * 8
        assert (await served_by(gw, "fast"))[1]["x-tollway-route-reason"] == "latency"


async def test_active_checks_mark_a_dead_provider_and_show_it(ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    key = new_key()
    snap = snapshot(key, eu1.base_url, eu2.base_url, us.base_url)
    async with gateway(snap, key) as gw:
        holder = SnapshotHolder()
        assert holder.install(snap) is None
        checker = HealthChecker(holder, gw.health, interval_s=0)
        await eu1.kill()
        await checker.check_once()
        assert len(eu2.fake.requests) == 0 and len(us.fake.requests) == 0, "probes are not chat requests"
        assert (await served_by(gw))[0] == "gpt-eu2", "a provider that fails its check is demoted up front"
        async with aiohttp.ClientSession() as session:
            async with session.get(gw.url + "/metrics") as resp:
                metrics = await resp.text()
            async with session.get(gw.url + "/healthz/deployments") as resp:
                states = {d["deployment"]: d["state"] for d in (await resp.json())["deployments"]}
        assert 'tollway_deployment_available{deployment="gpt-eu1",provider="eu1",state="provider-down"} 0' in metrics
        assert 'tollway_deployment_available{deployment="gpt-eu2",provider="eu2",state="healthy"} 1' in metrics
        assert UPSTREAM_KEY not in metrics
        assert states["gpt-eu1"] == "provider-down" and states["gpt-eu2"] == "healthy"
        assert "gpt-us" not in states, "acme may not use the US deployment: it is not shown as candidate"
        await eu1.start()
        await checker.check_once()
        assert (await served_by(gw))[0] == "gpt-eu1"


async def test_eu_data_plane_never_sends_a_byte_to_a_us_provider(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, UPSTREAM_KEY)
    connections: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await reader.read(100))
        writer.close()

    us = await asyncio.start_server(record, "127.0.0.1", 0)
    us_url = f"http://127.0.0.1:{us.sockets[0].getsockname()[1]}/v1"
    dead_eu1, dead_eu2 = f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"
    key = new_key()
    snap = snapshot(key, dead_eu1, dead_eu2, us_url)
    try:
        async with gateway(snap, key) as gw:
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as info:
                    await gw.client().chat.completions.create(model="resident", messages=HELLO, stream=stream)
                assert info.value.status_code == 502
                assert info.value.response.headers["x-tollway-deployment"] in ("gpt-eu1", "gpt-eu2")
                assert "could not be reached" in info.value.message
            holder = SnapshotHolder()
            assert holder.install(snap) is None
            await HealthChecker(holder, gw.health, interval_s=0).check_once()
            for _ in range(3):  # ejected EU deployments stay last resorts: still never the US one
                with pytest.raises(openai.APIStatusError):
                    await gw.client().chat.completions.create(model="resident", messages=HELLO)
    finally:
        us.close()
        await us.wait_closed()
    assert connections == [], "the US provider was contacted"


class CapturingRecords(Records):
    def __init__(self) -> None:
        super().__init__(RequestMetrics(Registry()))
        self.outcomes: list[tuple[Outcome, Any]] = []
        self._log = RequestLog.__new__(RequestLog)  # only keeps_content reads it: no writer runs

    def served(self, outcome: Outcome, response: Any = None, trace: RequestTrace | None = None) -> None:
        self.outcomes.append((outcome, response))

    def keeps_content(self, key: Key, trace: RequestTrace | None = None) -> bool:
        return True


@pytest.mark.parametrize("stream", [False, True])
async def test_records_get_upstream_time_and_the_streamed_answer(ups: tuple[Upstream, Upstream, Upstream],
                                                                 stream: bool) -> None:
    eu1, eu2, us = ups
    eu1.fake.delay_s = 0.05
    key = new_key()
    records = CapturingRecords()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key, records=records) as gw:
        reply = await gw.client().chat.completions.create(model="chat", messages=HELLO, stream=stream)
        if stream:
            async for _ in reply:  # type: ignore[union-attr]
                pass
    (outcome, response), = records.outcomes
    assert outcome.upstream_s is not None and 0.05 <= outcome.upstream_s <= outcome.duration_s
    assert response is not None and response["content"] == eu1.fake.reply


async def test_a_stream_cut_before_its_usage_is_charged_for_what_was_produced(
        ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    eu1.fake.die_after_chunks = 4  # the usage chunk never comes
    key = new_key()
    records = CapturingRecords()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key, records=records) as gw:
        stream = await gw.client().chat.completions.create(model="chat", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    (outcome, _), = records.outcomes
    assert outcome.aborted and outcome.usage is not None and outcome.usage.source == "estimated-aborted"
    assert outcome.usage.completion_tokens >= 2 and outcome.usage.prompt_tokens > 0
    assert outcome.cost_pico > 0


@pytest.fixture
async def unusual_upstream() -> AsyncIterator[str]:
    """200 answers an OpenAI-compatible server may give: no `usage` at all (charged an estimate), or a body that is
    not JSON (a failure: failed over)."""
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        if body["messages"][0]["content"] == "garbage":
            return web.Response(text="<html>upstream proxy says hi</html>", content_type="text/html")
        answer = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "No usage here, sorry."},
                               "finish_reason": "stop"}]}
        return web.json_response(answer)

    async with chat_upstream(chat) as base_url:
        yield base_url


async def test_answers_without_usage_are_charged_an_estimate_and_settled(
        ups: tuple[Upstream, Upstream, Upstream], unusual_upstream: str) -> None:
    _, eu2, us = ups
    key = new_key()
    records = CapturingRecords()
    async with gateway(snapshot(key, unusual_upstream, eu2.base_url, us.base_url), key, records=records) as gw:
        raw = await gw.client().chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        assert int(raw.headers["x-tollway-cost-usd-micros"]) > 0
        async with aiohttp.ClientSession() as session, session.post(
                gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": "chat", "messages": [{"role": "user", "content": "garbage"}]}) as resp:
            # A 200 that is not a chat completion is the upstream failing: the next candidate answers instead.
            assert resp.status == 200 and resp.headers["x-tollway-route-reason"] == "failover:protocol"
            assert resp.headers["x-tollway-deployment"] == "gpt-eu2"
    assert [o.status for o, _ in records.outcomes] == [200, 200]
    assert all(o.usage is not None and o.cost_pico > 0 for o, _ in records.outcomes)
    (plain, _), (garbage, _) = records.outcomes
    # A central estimate, marked: the answer's text at four characters a token, not the body's bytes.
    assert plain.usage is not None and plain.usage.source == "estimated-missing-usage"
    assert plain.usage.completion_tokens == -(-len("No usage here, sorry.") // 4)
    assert garbage.usage is not None and garbage.usage.source == "upstream"  # eu2's own report
    for outcome, _ in records.outcomes:  # never more than the request's cost bound: what was reserved covers it
        assert outcome.deployment is not None
        assert outcome.cost_pico <= deployment_cost_bound(outcome.plan.request.payload, outcome.deployment)


async def test_requested_output_is_clamped_to_the_catalog_limit_upstream(
        ups: tuple[Upstream, Upstream, Upstream]) -> None:
    eu1, eu2, us = ups
    key = new_key()
    async with gateway(snapshot(key, eu1.base_url, eu2.base_url, us.base_url), key) as gw:
        await gw.client().chat.completions.create(model="chat", messages=HELLO, max_tokens=50_000)
        await gw.client().chat.completions.create(model="chat", messages=HELLO, max_completion_tokens=100)
    assert eu1.fake.requests[0].body["max_tokens"] == 4096  # the deployment's maxOutputTokens
    assert eu1.fake.requests[1].body["max_completion_tokens"] == 100
