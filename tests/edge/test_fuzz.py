"""Fuzz the data plane's inference endpoints: no body a key holder can send gets a 5xx (issue 11).

Real sockets: one data plane on loopback with a policy whose routes reach the built-in ``mock`` provider and fake
OpenAI, Anthropic, Gemini and Bedrock servers (so the outbound translations run too). For every endpoint, the
valid bodies of ``tests.edge.bodies`` are mutated (``tests.edge.mutate``: every node replaced by every JSON kind,
deep nesting, huge numbers, invalid UTF-8, NUL bytes, broken JSON text), each sent to a model of the endpoint drawn
at random, streaming on or off. A seeded generator makes every run send the same bodies (``TOLLWAY_FUZZ_SEED``
picks other ones, to explore; a finding is reproduced with the seed it names). Every answer must be below 500;
an error must be in the API's own format (OpenAI's, or Anthropic's on ``/v1/messages``); a stream must end in
its terminator, not in an error event; and after each batch the valid bodies still get 200 from every model.

The fakes answer what they cannot read with their provider's 400 (the real providers refuse such a body; a fake
that crashed would answer 500, which says nothing about the gateway): ``FakeCrashes`` counts those.
Concurrency stays far below the data plane's requests in flight, so nothing is shed.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web

from dataplane.api.app import create_app
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.edge.bodies import ENDPOINTS, MODEL, Dialect, Endpoint
from tests.edge.mutate import Mutation, byte_mutations, dumps, tree_mutations
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock, service_model
from tests.fakes.google_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

SEED = int(os.environ.get("TOLLWAY_FUZZ_SEED", "11"))  # another seed explores other values
WORKERS = 6  # concurrent requests: far below the data plane's requests in flight (nothing is shed)
BATCH = 250  # mutations between two checks that valid requests still work
TREE_ROUNDS = 3  # each node of each base body replaced by a value of each JSON kind, this many times
BYTE_MUTATIONS = 150  # per base body

OPENAI_KEY = "sk-fuzz-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-fuzz-0123456789"
GEMINI_KEY = "AIza-fuzz-gemini-0123456789"
BEDROCK_KEY = "bedrock-fuzz-api-key-0123456789"
ENV = {"TOLLWAY_FUZZ_OPENAI": OPENAI_KEY, "TOLLWAY_FUZZ_ANTHROPIC": ANTHROPIC_KEY,
       "TOLLWAY_FUZZ_GEMINI": GEMINI_KEY, "TOLLWAY_FUZZ_BEDROCK": BEDROCK_KEY}


def snapshot(key: str, openai_url: str, anthropic_url: str, gemini_url: str, bedrock_url: str) -> pb.Snapshot:
    snap = pb.Snapshot(version="v-fuzz", region="eu")
    snap.tenants.add(name="acme", regions=["eu"])
    snap.keys.add(id="k", hash=hash_key(key), tenant="acme")
    timeouts = {"region": "eu", "connect_timeout_s": 1.0, "read_timeout_s": 5.0}
    snap.providers.add(name="mock", type="mock", region="eu")
    snap.providers.add(name="oai", type="openai", base_url=openai_url, credential_env="TOLLWAY_FUZZ_OPENAI",
                       **timeouts)
    snap.providers.add(name="claude", type="anthropic", base_url=anthropic_url,
                       credential_env="TOLLWAY_FUZZ_ANTHROPIC", **timeouts)
    snap.providers.add(name="gemini", type="gemini", base_url=gemini_url, credential_env="TOLLWAY_FUZZ_GEMINI",
                       **timeouts)
    snap.providers.add(name="bedrock", type="bedrock", base_url=bedrock_url, aws_region="eu-central-1",
                       credential_env="TOLLWAY_FUZZ_BEDROCK", **timeouts)
    prices = pb.Prices(input=1_000_000, output=2_000_000, cached_input=500_000)
    chat = {"capabilities": ["tools", "vision", "json_mode"], "context_window": 128_000, "max_output_tokens": 4096,
            "prices": prices}
    generative = ["chat", "completions", "responses"]
    for name, provider, upstream, surfaces in (
            ("mock", "mock", "mock-1", generative), ("oai", "oai", "gpt-4o-mini", generative),
            ("claude", "claude", "claude-3-5-haiku-20241022", ["chat", "count_tokens"]),
            ("gemini", "gemini", "gemini-2.5-flash", ["chat", "count_tokens"]),
            ("nova", "bedrock", "amazon.nova-lite-v1:0", ["chat"]),
            ("bedrock-claude", "bedrock", "eu.anthropic.claude-3-5-haiku-20241022-v1:0", ["chat"])):
        snap.deployments.add(name=name, provider=provider, upstream_model=upstream, surfaces=surfaces, **chat)
    for name, provider, upstream, family, dimensions in (
            ("mock-embed", "mock", "mock-embed", "mock", 16),
            ("oai-embed", "oai", "text-embedding-3-small", "te3", 8),
            ("gemini-embed", "gemini", "gemini-embedding-001", "gemini-embedding-768", 768),
            ("titan", "bedrock", "amazon.titan-embed-text-v2:0", "titan-v2-512", 512)):
        snap.deployments.add(name=name, provider=provider, upstream_model=upstream, context_window=8191,
                             prices=prices, surfaces=["embeddings"],
                             embedding=pb.Embedding(family=family, dimensions=dimensions))
    free = pb.Prices(input=0, output=0, cached_input=0)
    for name, provider in (("mock-mod", "mock"), ("oai-mod", "oai")):
        snap.deployments.add(name=name, provider=provider, upstream_model="omni-moderation-latest",
                             context_window=32768, prices=free, surfaces=["moderations"])
    failover = pb.Failover(attempts=1, attempt_timeout_s=5, total_timeout_s=5, on=["connect"])
    for deployment in snap.deployments:
        kind = "embeddings" if "embeddings" in deployment.surfaces else "chat"
        snap.routes.add(name=deployment.name, kind=kind, deployments=[deployment.name], strategy="priority",
                        failover=failover)
    return snap


@dataclass
class FakeCrashes:
    """Bodies a fake upstream could not read (answered with its provider's 400): its blind spots, not ours."""

    seen: list[str] = field(default_factory=list)


ProviderRefusal = Callable[[str], web.Response]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_400(message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                        "code": None}}, status=400)


def _anthropic_400(message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": message}},
                             status=400)


def _google_400(message: str) -> web.Response:
    return web.json_response({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}, status=400)


def _aws_400(message: str) -> web.Response:
    return web.json_response({"message": message}, status=400, headers={"x-amzn-ErrorType": "ValidationException"})


def guarded(app: web.Application, refusal: ProviderRefusal, crashes: FakeCrashes) -> web.Application:
    """``app`` answering with ``refusal`` where its handler raises (recorded in ``crashes``)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # the fake's blind spot: the real provider refuses such a body with a 400
            crashes.seen.append(f"{request.path}: {exc!r}"[:200])
            return refusal(f"the fake cannot read this body: {exc!r}"[:200])

    app.middlewares.append(guard)
    return app


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass
class World:
    url: str
    key: str
    http: aiohttp.ClientSession
    crashes: FakeCrashes


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    crashes = FakeCrashes()
    bedrock = FakeBedrock(api_key=BEDROCK_KEY)
    service_model()
    async with AsyncExitStack() as stack:
        openai_url = await stack.enter_async_context(serving(guarded(FakeOpenAI(token=OPENAI_KEY).app(),
                                                                     _openai_400, crashes)))
        anthropic_url = await stack.enter_async_context(serving(guarded(FakeAnthropic(key=ANTHROPIC_KEY).app(),
                                                                        _anthropic_400, crashes)))
        gemini_url = await stack.enter_async_context(serving(guarded(FakeGemini(api_key=GEMINI_KEY).app(),
                                                                     _google_400, crashes)))
        bedrock_url = await stack.enter_async_context(serving(guarded(bedrock.app(), _aws_400, crashes)))
        key = generate_key()
        holder = SnapshotHolder()
        assert holder.install(snapshot(key, openai_url + "/v1", anthropic_url, gemini_url, bedrock_url)) is None
        url = await stack.enter_async_context(serving(create_app(DataPlaneSettings(port=0), holder)))
        http = await stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=WORKERS), timeout=aiohttp.ClientTimeout(total=20)))
        yield World(url, key, http, crashes)


# -- what a client must see ----------------------------------------------------------------------------------------

def error_problem(dialect: Dialect, body: bytes) -> str | None:
    """Why ``body`` is not an error in the dialect's format, or None."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the error is not JSON"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str) or not isinstance(
            error.get("type"), str):
        return "the error is not {'error': {'message', 'type'}}"
    if dialect == "anthropic" and parsed.get("type") != "error":
        return "the error is not Anthropic's {'type': 'error', 'error': {...}}"
    return None


def stream_problem(dialect: Dialect, body: bytes) -> str | None:
    """Why a 200 event stream did not end well (an error event, or no terminator), or None."""
    events = [e for e in body.split(b"\n\n") if e.strip()]
    if not events:
        return "an empty stream"
    last = events[-1]
    if any(e.startswith((b"event: error", b'data: {"error"', b"event: response.failed")) for e in events):
        return "an error event in the stream"
    if dialect == "anthropic":
        return None if last.startswith(b"event: message_stop") else "the stream does not end in message_stop"
    if last == b"data: [DONE]" or last.startswith((b"event: response.completed", b"event: response.incomplete")):
        return None
    return "the stream does not end in its terminator"


def problem(dialect: Dialect, status: int, content_type: str, body: bytes) -> str | None:
    if status >= 500:
        return f"a {status}"
    if status >= 400:
        return error_problem(dialect, body)
    if content_type == "text/event-stream":
        return stream_problem(dialect, body)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "a 2xx whose body is not JSON"
    return None if isinstance(parsed, dict) else "a 2xx whose body is not a JSON object"


@dataclass(frozen=True)
class Sent:
    endpoint: Endpoint
    model: str
    stream: bool
    describe: str
    body: bytes


@dataclass(frozen=True)
class Finding:
    sent: Sent
    status: int
    why: str
    answer: bytes

    def __str__(self) -> str:
        s = self.sent
        return (f"{s.endpoint.path} model={s.model} stream={s.stream} {s.describe}: {self.why} "
                f"(status {self.status}: {self.answer[:160]!r}; body {s.body[:120]!r})")


def headers(world: World, dialect: Dialect) -> dict[str, str]:
    if dialect == "anthropic":
        return {"x-api-key": world.key, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    return {"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}


async def send(world: World, sent: Sent) -> Finding | None:
    dialect = sent.endpoint.dialect
    try:
        async with world.http.post(world.url + sent.endpoint.path, data=sent.body,
                                   headers=headers(world, dialect)) as resp:
            answer = await resp.read()
            why = problem(dialect, resp.status, resp.content_type, answer)
            return Finding(sent, resp.status, why, answer) if why else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Finding(sent, 0, f"the connection failed: {exc!r}", b"")


async def send_all(world: World, batch: list[Sent]) -> list[Finding]:
    queue = list(reversed(batch))
    findings: list[Finding] = []

    async def worker() -> None:
        while queue:
            finding = await send(world, queue.pop())
            if finding is not None:
                findings.append(finding)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return findings


def body_for(mutation: Mutation, model: str, stream: bool) -> bytes:
    body = mutation.body.replace(orjson.dumps(MODEL), orjson.dumps(model))
    return body.replace(b'"stream":false', b'"stream":true') if stream else body


def valid_requests(endpoint: Endpoint) -> list[Sent]:
    """Every base body to every model, streamed and not: what must keep working."""
    return [Sent(endpoint, model, stream, "valid", body_for(Mutation("valid", dumps(base.body)), model, stream))
            for base in endpoint.bases for model in endpoint.models_of(base)
            for stream in ((False, True) if endpoint.streams else (False,))]


def mutated_requests(endpoint: Endpoint, rng: random.Random) -> list[Sent]:
    out = []
    for base in endpoint.bases:
        rounds = [mutation for _ in range(TREE_ROUNDS) for mutation in tree_mutations(base.body, rng)]
        for mutation in [*rounds, *byte_mutations(base.body, rng, BYTE_MUTATIONS)]:
            model, stream = rng.choice(endpoint.models_of(base)), endpoint.streams and rng.random() < 0.5
            out.append(Sent(endpoint, model, stream, mutation.describe, body_for(mutation, model, stream)))
    return out


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.path for e in ENDPOINTS])
async def test_no_mutated_body_gets_a_5xx_and_valid_ones_keep_working(world: World, endpoint: Endpoint) -> None:
    valid = valid_requests(endpoint)
    broken = await send_all(world, valid)
    assert not broken, "the valid bodies must work before fuzzing:\n" + "\n".join(map(str, broken))
    mutated = mutated_requests(endpoint, random.Random(f"{SEED}:{endpoint.path}"))
    findings: list[Finding] = []
    for start in range(0, len(mutated), BATCH):
        findings += await send_all(world, mutated[start:start + BATCH])
        still = await send_all(world, valid)
        assert not still, (f"valid requests failed after mutations {start}..{start + BATCH}:\n"
                           + "\n".join(map(str, still)))
    assert not findings, (f"{len(findings)} of {len(mutated)} mutated bodies (seed {SEED}; the fakes could not read "
                          f"{len(world.crashes.seen)}):\n" + "\n".join(map(str, findings[:200])))
