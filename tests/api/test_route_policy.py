"""Every inference route enforces the same policy as chat: a walk over the data plane's route table.

"Inference" is every route that can reach an upstream. For each one the walk sends, over a real socket to a
real data plane (mock provider), a request with no key (401), a key that may not use the model (403), a key
over its rate limit (429), a tenant whose budget has no grant yet (refused by the budget reservation), and an
allowed request, which must be answered with the gateway's headers and leave a usage record and a metric. A
route added to the app without a row here fails the walk: it has to show it cannot bypass the policy (the bug
class of a passthrough that skipped budgets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.dataplane.in_process import ListSpool, in_process_data_plane
from tollway.keyformat import generate_key, hash_key
from tollway.pb import snapshot_pb2 as pb

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
# One sample body per inference route: (method, path) -> (body, the model it names).
SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/chat/completions"): CHAT,
    ("POST", "/v1/responses"): {"model": "chat", "input": "hi", "max_output_tokens": 8},
    ("POST", "/v1/embeddings"): {"model": "embed", "input": "hi"},
    ("POST", "/v1/completions"): {"model": "chat", "prompt": "hi", "max_tokens": 8},
    ("POST", "/v1/moderations"): {"model": "chat", "input": "hi"},
    ("POST", "/v1/messages"): {"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    ("POST", "/v1/messages/count_tokens"): {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
}
# Routes that cannot reach an upstream: what they are allowed to skip is everything.
NOT_INFERENCE = {("GET", "/v1/models"), ("GET", "/v1/models/{model}"), ("GET", "/healthz"), ("GET", "/readyz"),
                 ("GET", "/healthz/deployments"), ("GET", "/metrics"), ("*", "/{tail}")}


@dataclass
class Keys:
    ok: str
    other_route: str
    limited: dict[str, str]  # path -> a key allowed one request a minute (rate limits are per key, not per route)
    budgeted: str


def snapshot() -> tuple[pb.Snapshot, Keys]:
    keys = Keys(generate_key(), generate_key(), {path: generate_key() for _, path in SAMPLES}, generate_key())
    snap = pb.Snapshot(version="v-routes", region="eu")
    snap.tenants.add(name="acme", regions=["eu"])
    snap.tenants.add(name="spender", regions=["eu"], budget=pb.Budget(monthly_micros=1_000_000, soft_percent=80))
    snap.keys.add(id="ok", hash=hash_key(keys.ok), tenant="acme")
    snap.keys.add(id="other", hash=hash_key(keys.other_route), tenant="acme", routes=["other"])
    for i, key in enumerate(keys.limited.values()):
        snap.keys.add(id=f"limited-{i}", hash=hash_key(key), tenant="acme",
                      rate_limit=pb.RateLimit(requests_per_minute=1))
    snap.keys.add(id="budgeted", hash=hash_key(keys.budgeted), tenant="spender")
    snap.providers.add(name="mock", type="mock", region="eu")
    prices = pb.Prices(input=1_000_000, output=2_000_000, cached_input=1_000_000)
    snap.deployments.add(name="mock-chat", provider="mock", upstream_model="mock-1", context_window=8192,
                         max_output_tokens=256, prices=prices,
                         surfaces=["chat", "completions", "moderations"])
    snap.deployments.add(name="mock-embed", provider="mock", upstream_model="mock-embed", context_window=8192,
                         prices=prices, surfaces=["embeddings"], embedding=pb.Embedding(family="m", dimensions=8))
    failover = pb.Failover(attempts=1, attempt_timeout_s=5, total_timeout_s=5, on=["connect"])
    for name, dep, kind in (("chat", "mock-chat", "chat"), ("other", "mock-chat", "chat"),
                            ("embed", "mock-embed", "embeddings")):
        snap.routes.add(name=name, kind=kind, deployments=[dep], strategy="priority", failover=failover)
    return snap, keys


@pytest.fixture
async def data_plane() -> AsyncIterator[tuple[str, web.Application, Keys, ListSpool]]:
    snap, keys = snapshot()
    async with in_process_data_plane(snap, limits=True) as dp:
        yield dp.url, dp.app, keys, dp.spool


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if route.method != "HEAD":
            out.add((route.method, str(path)))
    return out


async def test_every_inference_route_enforces_the_policy(
        data_plane: tuple[str, web.Application, Keys, ListSpool]) -> None:
    url, app, keys, spool = data_plane
    table = routes_of(app)
    unclassified = table - set(SAMPLES) - NOT_INFERENCE
    assert not unclassified, f"routes neither walked nor declared non-inference: {sorted(unclassified)}"
    assert set(SAMPLES) <= table, f"walked routes missing from the app: {sorted(set(SAMPLES) - table)}"
    async with aiohttp.ClientSession() as http:

        async def send(path: str, body: dict[str, Any], key: str | None) -> tuple[int, Any, Any]:
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Authorization"] = f"Bearer {key}"
            async with http.post(url + path, data=orjson.dumps(body), headers=headers) as resp:
                return resp.status, orjson.loads(await resp.read()), resp.headers

        for (_method, path), body in SAMPLES.items():
            where = f"POST {path}"
            status, answer, _ = await send(path, body, None)
            assert status == 401, (where, answer)
            status, answer, _ = await send(path, body, keys.other_route)
            assert status == 403, (where, answer)
            before = len(spool.records)
            status, answer, headers = await send(path, body, keys.ok)
            assert status == 200, (where, answer)
            assert headers["x-tollway-deployment"] and headers["x-request-id"] and headers["x-tollway-snapshot"]
            assert len(spool.records) == before + 1, f"{where}: no usage record"
            status, answer, headers = await send(path, body, keys.limited[path])
            assert status == 200, (where, answer)
            status, answer, headers = await send(path, body, keys.limited[path])
            assert status == 429, (where, answer)
            assert "retry-after" in headers
            status, answer, _ = await send(path, body, keys.budgeted)
            if path == "/v1/messages/count_tokens":
                assert status == 200, (where, "token counting is free: no budget reservation", answer)
            else:
                # OpenAI's error code, or Anthropic's envelope (its message names the budget)
                assert status == 503 and "budget" in orjson.dumps(answer).decode(), (where, answer)
    metrics = (await _text(url + "/metrics"))
    assert "tollway_requests_total" in metrics


async def _text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return await resp.text()


@pytest.mark.parametrize("block", [
    {"type": "image", "source": "not an object"}, {"type": "image", "source": {"type": "base64"}},
    {"type": "image", "source": None}, {"type": "image"},
], ids=["string", "no data", "null", "no source"])
async def test_an_anthropic_image_block_of_the_wrong_shape_is_a_400_not_a_5xx(
        data_plane: tuple[str, web.Application, Keys, ListSpool], block: dict[str, Any]) -> None:
    url, _app, keys, _spool = data_plane
    body = {"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": [block]}]}
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/messages", data=orjson.dumps(body),
            headers={"x-api-key": keys.ok, "Content-Type": "application/json"}) as resp:
        answer = orjson.loads(await resp.read())
    assert 400 <= resp.status < 500, answer
    assert answer["type"] == "error" and answer["error"]["message"]  # Anthropic's envelope
