"""The fake itself: ``FakeOpenAI`` (its knobs and records, its routes) and ``fake_openai``, which serves one on a
free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from tests.fakes.openai_upstream.completions import _Completions
from tests.fakes.openai_upstream.embeddings import _Embeddings
from tests.fakes.openai_upstream.moderations import _Moderations
from tests.fakes.openai_upstream.responses import _Responses


@dataclass
class FakeOpenAI(_Completions, _Embeddings, _Responses, _Moderations):
    """Knobs and records of one fake server; owned by one test, mutated only by it. Its fields and what each
    endpoint does first are ``_Prelude``'s (``prelude``), its endpoints those of ``completions``, ``embeddings``,
    ``responses`` and ``moderations``."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/responses/{response_id}", self._stored_response)
        app.router.add_delete("/v1/responses/{response_id}", self._stored_response)
        app.router.add_post("/v1/moderations", self._moderations)
        return app


@asynccontextmanager
async def fake_openai(token: str = "sk-fake") -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(token=token)
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()
