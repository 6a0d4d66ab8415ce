"""Malformed upstream framing through a data plane: a ``protocol`` failure that fails over before the first byte
and, when every candidate is broken, a 502 in OpenAI's format, never a 500 or the broken bytes passed on.

The upstreams are scripted raw sockets (``tests.fakes.scripted_upstream``) sending the framings of
``tests/dataplane/test_upstream_framing.py``; the healthy one is an aiohttp app.
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.dataplane.test_upstream_framing import MALFORMED
from tests.fakes.scripted_upstream import scripted_upstream
from tests.routing.world import CREDENTIAL_ENV, chat_upstream, gateway, new_key, snapshot

HELLO = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
COMPLETION = {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
         "choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}]}


@pytest.fixture(autouse=True)
def credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIAL_ENV, "sk-malformed-upstream")


async def healthy(request: web.Request) -> web.StreamResponse:
    if not (await request.json()).get("stream"):
        return web.json_response(COMPLETION)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"data: " + orjson.dumps(CHUNK) + b"\n\ndata: [DONE]\n\n")
    return resp


async def post(url: str, key: str, body: dict[str, object]) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/chat/completions", data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_framing_fails_over_then_answers_502(name: str, stream: bool) -> None:
    body = {**HELLO, "stream": stream}
    key = new_key()
    async with scripted_upstream(MALFORMED[name], keep_open=False) as bad, chat_upstream(healthy) as good:
        async with gateway(snapshot(key, bad.url + "/v1", good, "http://127.0.0.1:9/v1"), key) as gw:
            status, headers, answer = await post(gw.url, gw.key, body)
            assert status == 200, answer
            assert headers["x-tollway-deployment"] == "gpt-eu2"
            assert headers["x-tollway-route-reason"] == "failover:protocol"
            assert (b"[DONE]" in answer) if stream else (orjson.loads(answer)["choices"][0]["message"]["content"]
                                                       == "fine")
        async with gateway(snapshot(key, bad.url + "/v1", bad.url + "/v1", "http://127.0.0.1:9/v1"), key) as gw:
            status, headers, answer = await post(gw.url, gw.key, body)
            assert status == 502, answer  # every candidate broken, before the first byte: the API's own error
            error = orjson.loads(answer)["error"]
            assert error["type"] and "malformed answer" in error["message"]
            assert headers.get("x-tollway-cost-usd-micros") is None
        assert len(bad.requests) == 3  # each attempt sent once, never resent on the broken connection
