"""OpenTelemetry traces from a real data plane, exported over OTLP/HTTP to a real receiver on loopback.

The receiver is an aiohttp server that decodes each ``POST /v1/traces`` as an ``ExportTraceServiceRequest``
(``opentelemetry-proto``); the data plane gets its policy from a real control plane over gRPC; the upstreams are
the fake OpenAI server, which records the headers it received; the client is the official openai SDK. What is
asserted is what an operator sees in a tracing backend: the span tree, its attributes, and that the
``traceparent`` the upstream received names the attempt span exported later.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.server import ControlPlane
from controlplane.store.embedded import EmbeddedStore
from dataplane.serve import DataPlane
from tests.cli.gatectl_process import base_env, start_gatectl
from tests.conftest import free_port
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import DP_TOKEN, DataPlaneFactory, eventually, running_control_plane
from tests.fakes.openai_upstream import FakeOpenAI, fake_openai
from tests.observability.leakscan import assert_no_leaks, scan

UPSTREAM_KEY = "sk-upstream-credential-for-tracing-5512"
PROMPT_QUIET = "Quiet tenant secret plan: MAGENTA-HERON-3141"
PROMPT_FULL = "Full tenant question about TEAL-OTTER-5150"
REPLY = "The answer is SILVER-FALCON-2718 indeed"
HEX = "0123456789abcdef"


@dataclass
class ExportedSpan:
    span: Span
    resource: dict[str, Any]

    @property
    def attrs(self) -> dict[str, Any]:
        return {kv.key: _value(kv.value) for kv in self.span.attributes}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class Receiver:
    """A real OTLP/HTTP traces receiver: decodes what it gets and keeps the raw bodies too (for leak scans)."""

    spans: list[ExportedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append(body)
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                self.spans.extend(ExportedSpan(s, resource) for s in ss.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    def of_trace(self, trace_id: str) -> list[ExportedSpan]:
        return [s for s in self.spans if s.span.trace_id.hex() == trace_id]


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@dataclass
class World:
    receiver: Receiver
    primary: FakeOpenAI
    backup: FakeOpenAI
    cp: ControlPlane
    keys: dict[str, str]
    tmp: Path


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("TRACING_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms: the tests wait for spans
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER",
                 "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    store = await EmbeddedStore.open(str(tmp_path / "store"))
    try:
        async with otlp_receiver() as receiver, fake_openai(UPSTREAM_KEY) as primary, \
                fake_openai(UPSTREAM_KEY) as backup:
            primary.reply = backup.reply = REPLY
            repo = Repository(store)
            credential = {"env": "TRACING_TEST_UPSTREAM_KEY"}
            docs = [
                provider("up-a", "eu", base_url=primary.base_url, credential=credential),
                provider("up-b", "eu", base_url=backup.base_url, credential=credential),
                model("gpt-a", "up-a"), model("gpt-b", "up-b"),
                route("chat", "gpt-a", "gpt-b", strategy="priority"),
                tenant("quiet", "eu", projects=("web",)), tenant("full", "eu", logging={"content": "full"}),
            ]
            await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(docs)], who="test")
            async with running_control_plane(store, tmp_path / "cp") as cp:
                keys = {t: (await repo.create_key(f"{t}-key", t, who="test")).secret for t in ("quiet", "full")}
                yield World(receiver, primary, backup, cp, keys, tmp_path)
    finally:
        await store.close()


async def start_dp(world: World, factory: DataPlaneFactory, sampling: float | None, name: str = "dp-1") -> DataPlane:
    dp = await factory(world.cp.grpc_target, node_id=name, otlp_endpoint=world.receiver.url,
                       trace_sampling=sampling)
    await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 2,  # type: ignore[union-attr]
                     what="snapshot with the keys")
    return dp


def client(dp: DataPlane, key: str, traceparent: str | None = None) -> openai.AsyncOpenAI:
    headers = {"traceparent": traceparent} if traceparent else None
    return openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=key, max_retries=0, default_headers=headers)


async def flushed(dp: DataPlane) -> None:
    assert dp.tracer is not None
    assert await asyncio.to_thread(dp.tracer.flush)


async def spans_of(receiver: Receiver, trace_id: str, count: int) -> list[ExportedSpan]:
    await eventually(lambda: len(receiver.of_trace(trace_id)) >= count, what=f"{count} spans exported")
    return receiver.of_trace(trace_id)


def received_traceparents(fake: FakeOpenAI) -> list[str | None]:
    return [r.headers.get("traceparent") for r in fake.requests]


def split(traceparent: str) -> tuple[str, str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    return version, trace_id, span_id, flags


def request_and_attempts(spans: list[ExportedSpan]) -> tuple[ExportedSpan, list[ExportedSpan]]:
    servers = [s for s in spans if s.span.kind == Span.SPAN_KIND_SERVER]
    clients = [s for s in spans if s.span.kind == Span.SPAN_KIND_CLIENT]
    assert len(servers) == 1
    return servers[0], sorted(clients, key=lambda s: s.span.start_time_unix_nano)


async def test_a_sampled_client_traceparent_is_honoured_at_ratio_zero_and_propagated(
        world: World, data_plane_factory: DataPlaneFactory) -> None:
    dp = await start_dp(world, data_plane_factory, sampling=0.0)  # parent-based: only the client's decision
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    reply = await client(dp, world.keys["quiet"], f"00-{trace_id}-{client_span}-01").chat.completions.create(
        model="chat", messages=[{"role": "user", "content": PROMPT_QUIET}], max_tokens=50, temperature=0.5)
    assert reply.choices[0].message.content == REPLY
    await flushed(dp)
    request, attempts = request_and_attempts(await spans_of(world.receiver, trace_id, 2))

    # The tree: client span → the data plane's server span → one client span per upstream attempt.
    assert request.span.parent_span_id.hex() == client_span
    assert [a.span.parent_span_id for a in attempts] == [request.span.span_id]
    (sent,) = received_traceparents(world.primary)
    assert sent is not None
    assert split(sent) == ("00", trace_id, attempts[0].span.span_id.hex(), "01")

    assert request.span.name == "chat chat"
    assert request.attrs == request.attrs | {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "chat",
        "gen_ai.response.model": "gpt-a", "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.request.max_tokens": 50, "gen_ai.request.temperature": 0.5,
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,  # type: ignore[union-attr]
        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,  # type: ignore[union-attr]
        "tollway.tenant": "quiet", "tollway.route": "chat", "tollway.deployment": "gpt-a",
        "tollway.route.reason": "priority", "tollway.attempts": 1, "http.response.status_code": 200,
        "tollway.usage.cached_input_tokens": 0, "tollway.usage.reasoning_output_tokens": 0,
    }
    assert request.attrs["tollway.cost.pico_usd"] > 0 and request.attrs["tollway.cost.usd"].startswith("0.")
    assert request.span.status.code == Status.STATUS_CODE_UNSET
    attempt = attempts[0]
    assert attempt.span.name == "chat gpt-a"
    assert attempt.attrs == attempt.attrs | {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-a", "tollway.deployment": "gpt-a",
        "tollway.provider": "up-a", "server.address": "127.0.0.1", "tollway.attempt": 1}
    assert request.span.start_time_unix_nano <= attempt.span.start_time_unix_nano \
        <= attempt.span.end_time_unix_nano <= request.span.end_time_unix_nano
    assert request.resource["service.name"] == "tollway-dataplane"
    assert request.resource["tollway.region"] == "eu"


async def test_unsampled_requests_export_nothing_and_forward_the_clients_traceparent(
        world: World, data_plane_factory: DataPlaneFactory) -> None:
    dp = await start_dp(world, data_plane_factory, sampling=0.0)
    quiet = world.keys["quiet"]
    await client(dp, quiet).chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    await client(dp, quiet, unsampled).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}])
    await client(dp, quiet, "00-zz-not-valid-01").chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}])
    await flushed(dp)
    await asyncio.sleep(0.2)
    assert world.receiver.spans == []
    # No trace context of our own, the client's forwarded as it was, an invalid one dropped.
    assert received_traceparents(world.primary) == [None, unsampled, None]


async def test_failover_gives_two_attempt_spans_each_named_in_its_upstreams_traceparent(
        world: World, data_plane_factory: DataPlaneFactory) -> None:
    dp = await start_dp(world, data_plane_factory, sampling=1.0)
    world.primary.fail_status, world.primary.fail_times = 503, 1
    raw = await client(dp, world.keys["quiet"]).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]) == REPLY
    (first,), (second,) = received_traceparents(world.primary), received_traceparents(world.backup)
    assert first is not None and second is not None
    trace_id = split(first)[1]
    await flushed(dp)
    request, attempts = request_and_attempts(await spans_of(world.receiver, trace_id, 3))
    assert not request.span.parent_span_id  # a root: the client sent no traceparent
    assert [a.span.span_id.hex() for a in attempts] == [split(first)[2], split(second)[2]]
    assert {a.span.parent_span_id for a in attempts} == {request.span.span_id}
    failed, answered = attempts
    assert failed.attrs["error.type"] == "5xx" and failed.attrs["http.response.status_code"] == 503
    assert failed.span.status.code == Status.STATUS_CODE_ERROR
    assert answered.attrs["tollway.deployment"] == "gpt-b" and "error.type" not in answered.attrs
    assert answered.attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert request.attrs["tollway.route.reason"] == "failover:5xx" and request.attrs["tollway.attempts"] == 2
    assert request.attrs["tollway.deployment"] == "gpt-b"
    assert request.attrs["gen_ai.usage.output_tokens"] > 0
    assert failed.span.end_time_unix_nano <= answered.span.start_time_unix_nano


async def test_refused_requests_get_a_span_with_the_error(world: World, data_plane_factory: DataPlaneFactory) -> None:
    dp = await start_dp(world, data_plane_factory, sampling=1.0)
    with pytest.raises(openai.NotFoundError):
        await client(dp, world.keys["quiet"]).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}])
    await flushed(dp)
    await eventually(lambda: len(world.receiver.spans) == 1, what="the refusal's span")
    (span,) = world.receiver.spans
    assert span.span.kind == Span.SPAN_KIND_SERVER
    assert span.attrs["http.response.status_code"] == 404 and span.attrs["error.type"]
    assert world.primary.requests == []


async def test_content_only_for_full_tenants_and_never_a_secret(
        world: World, data_plane_factory: DataPlaneFactory) -> None:
    dp = await start_dp(world, data_plane_factory, sampling=1.0)
    for name, prompt in (("quiet", PROMPT_QUIET), ("full", PROMPT_FULL)):
        for stream in (False, True):
            answer = await client(dp, world.keys[name]).chat.completions.create(
                model="chat", messages=[{"role": "user", "content": prompt}], stream=stream)
            if stream:
                async for _ in answer:  # type: ignore[union-attr]
                    pass
    await flushed(dp)
    await eventually(lambda: sum(s.span.kind == Span.SPAN_KIND_SERVER for s in world.receiver.spans) == 4,
                     what="four request spans")
    servers = [s for s in world.receiver.spans if s.span.kind == Span.SPAN_KIND_SERVER]
    never = {"upstream credential": UPSTREAM_KEY, "data-plane token": DP_TOKEN,
             **{f"{t} client key": k for t, k in world.keys.items()}}
    raw = [(f"export {i}", body) for i, body in enumerate(world.receiver.bodies)]
    assert_no_leaks(never | {"quiet prompt": PROMPT_QUIET}, raw)
    quiet = [s for s in servers if s.attrs["tollway.tenant"] == "quiet"]
    full = [s for s in servers if s.attrs["tollway.tenant"] == "full"]
    assert len(quiet) == len(full) == 2
    for span in quiet:
        assert "gen_ai.input.messages" not in span.attrs and "gen_ai.output.messages" not in span.attrs
    for span in full:  # both the non-streamed and the streamed answer
        assert PROMPT_FULL in span.attrs["gen_ai.input.messages"]
        assert REPLY in span.attrs["gen_ai.output.messages"]
    assert scan({"reply": REPLY}, raw)


async def test_gatectl_dataplane_serve_honours_the_otel_environment(world: World) -> None:
    port = free_port()
    env = base_env(world.tmp) | {
        "TOLLWAY_DATAPLANE_TOKEN": DP_TOKEN, "OTEL_EXPORTER_OTLP_ENDPOINT": world.receiver.url,
        "OTEL_SERVICE_NAME": "edge-gateway", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "50", "TRACING_TEST_UPSTREAM_KEY": UPSTREAM_KEY,
    }
    dp = start_gatectl(world.tmp, "dp", "dataplane", "serve", "--control-plane", world.cp.grpc_target, "--region",
                       "eu", "--port", str(port), "--state-dir", str(world.tmp / "dp-cli"), "--workers", "1",
                       env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert dp.process.poll() is None, dp.stderr.read_text()
            assert time.monotonic() < deadline, "the data plane never became ready"
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        sampled, unsampled = secrets.token_hex(16), secrets.token_hex(16)
        for trace_id, flag in ((unsampled, "00"), (sampled, "01")):  # ratio 0: only the client's decision
            ai = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=world.keys["quiet"], max_retries=0,
                                    default_headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flag}"})
            await ai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        spans = await spans_of(world.receiver, sampled, 2)
        assert {s.resource["service.name"] for s in spans} == {"edge-gateway"}
        assert {s.resource["deployment.environment.name"] for s in spans} == {"test"}
        assert world.receiver.of_trace(unsampled) == []
    finally:
        assert dp.interrupt() == 0, dp.stderr.read_text()
    assert world.receiver.of_trace(unsampled) == []
    assert UPSTREAM_KEY not in dp.stderr.read_text()
    assert os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") is None  # the test's own process stays untraced
