"""The fake itself: ``FakeBedrock`` (its knobs and records, its routes) and ``fake_bedrock``, which serves one on a
free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.bedrock_upstream.converse import _Converse
from tests.fakes.bedrock_upstream.invoke import _Invoke
from tests.fakes.bedrock_upstream.validation import service_model


@dataclass
class FakeBedrock(_Converse, _Invoke):
    """Knobs and records of one fake Bedrock Runtime; owned by one test, mutated only by it. Its fields and what each
    endpoint does first are ``_Prelude``'s (``prelude``), its operations ``_Converse``'s (``converse``) and
    ``_Invoke``'s (``invoke``)."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post("/model/{modelId}/converse", self._converse)
        app.router.add_post("/model/{modelId}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{modelId}/invoke", self._invoke)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app


@asynccontextmanager
async def fake_bedrock(access_key: str = "AKIDEXAMPLE", secret_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                       session_token: str | None = None, region: str = "eu-central-1") -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock(access_key=access_key, secret_key=secret_key, session_token=session_token, region=region)
    service_model()
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
