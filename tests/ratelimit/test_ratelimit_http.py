"""Rate limits as a client sees them: a real data plane on a socket, a fake OpenAI upstream, the openai SDK.

The app's ``Gate`` protocol does not yet carry attribution or response headers (``admit(plan, now) ->
ApiError | None``): until it does, ``LimitsGate`` runs behind a small adapter and only status and error body
can be checked (``test_*_today``). Once the protocol is ``admit(plan, attribution, now) -> Admission |
Refusal`` (see the report of the rate-limit change), the ``test_*_wired`` tests run instead and check the
``x-ratelimit-*`` headers, ``Retry-After`` and attribution headers too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import openai
import pytest
from aiohttp import web
from openai.types.chat import ChatCompletionMessageParam

from dataplane.api.app import create_app
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from tests.dataplane.snapshots import CREDENTIAL, CREDENTIAL_ENV, Keys
from tests.fakes.openai_upstream import FakeOpenAI, fake_openai
from tests.ratelimit.limits_snapshot import limited_snapshot
from tollway.pb import snapshot_pb2 as pb

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@dataclass
class DataPlane:
    url: str
    keys: Keys
    upstream: FakeOpenAI
    gate: LimitsGate

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key or self.keys.acme_all, max_retries=0,
                                  timeout=10)


@asynccontextmanager
async def data_plane(monkeypatch: pytest.MonkeyPatch, tenant: pb.RateLimit | None = None,
                     per_user: pb.RateLimit | None = None, key: pb.RateLimit | None = None) -> AsyncIterator[DataPlane]:
    monkeypatch.setenv(CREDENTIAL_ENV, CREDENTIAL)
    async with fake_openai(CREDENTIAL) as upstream:
        snap, keys = limited_snapshot(tenant, per_user, key, eu_url=upstream.base_url)
        holder = SnapshotHolder()
        assert holder.install(snap) is None
        gate = LimitsGate()
        assert gate.configure(snap) is None
        runner = web.AppRunner(create_app(DataPlaneSettings(port=0), holder, gate), shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield DataPlane(f"http://127.0.0.1:{runner.addresses[0][1]}", keys, upstream, gate)
        finally:
            await runner.cleanup()


async def test_success_carries_ratelimit_headers_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    async with data_plane(monkeypatch, tenant=pb.RateLimit(requests_per_minute=600, tokens_per_minute=100_000),
                          key=pb.RateLimit(requests_per_minute=60)) as dp:
        raw = await dp.client().chat.completions.with_raw_response.create(model="chat", messages=HELLO,
                                                                           max_tokens=50)
        assert raw.parse().choices[0].message.content == dp.upstream.reply
        assert raw.headers["x-ratelimit-limit-requests"] == "60"  # the key's limit is the tighter one
        assert raw.headers["x-ratelimit-remaining-requests"] == "59"
        assert raw.headers["x-ratelimit-reset-requests"] == "1s"
        assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
        assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100_000 - 50
        # The estimate was reconciled with the upstream's usage when the request settled.
        usage = raw.parse().usage
        assert usage is not None
        raw = await dp.client().chat.completions.with_raw_response.create(model="chat", messages=HELLO,
                                                                           max_tokens=50)
        assert raw.headers["x-ratelimit-remaining-requests"] == "58"
        assert 100_000 - int(raw.headers["x-ratelimit-remaining-tokens"]) < usage.total_tokens + 200


async def test_rate_limited_request_is_429_with_headers_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    async with data_plane(monkeypatch, tenant=pb.RateLimit(requests_per_minute=2)) as dp:
        client = dp.client()
        for _ in range(2):
            await client.chat.completions.create(model="chat", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="chat", messages=HELLO)
        error = caught.value
        assert (error.status_code, error.code, error.type) == (429, "rate_limit_exceeded", "rate_limit_error")
        assert "tenant 'acme' requests per minute limit (2) reached; try again in" in error.message
        headers = error.response.headers
        assert headers["retry-after"] == "30"
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert re.fullmatch(r"59\.\d+s|1m0s", headers["x-ratelimit-reset-requests"])  # the bucket refills 2/min
        assert headers["x-tollway-rate-limit-scope"] == "tenant"
        assert len(dp.upstream.requests) == 2


async def test_user_header_and_project_checks_wired(monkeypatch: pytest.MonkeyPatch) -> None:
    async with data_plane(monkeypatch, per_user=pb.RateLimit(requests_per_minute=1)) as dp:
        client = dp.client()
        await client.chat.completions.create(model="chat", messages=HELLO,
                                             extra_headers={"x-tollway-user": "alice"})
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="chat", messages=HELLO, user="alice")
        with pytest.raises(openai.PermissionDeniedError) as denied:  # acme-all is bound to project web
            await client.chat.completions.create(model="chat", messages=HELLO, user="bob",
                                                 extra_headers={"x-tollway-project": "mobile"})
        assert denied.value.code == "project_not_allowed"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="chat", messages=HELLO, user="bob",
                                                 extra_headers={"x-tollway-tags": "ok,not ok"})
        assert bad.value.code == "invalid_tags"
        assert len(dp.upstream.requests) == 1
