"""A webhook receiver on loopback (a real aiohttp server) that checks every delivery as a careful receiver would:
the HMAC signature over ``timestamp.body``, a fresh timestamp, the idempotency key matching the body's id. It can
be told to fail the first delivery of each event, or every delivery, to prove retries."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Received:
    webhook: str
    event_id: str
    kind: str
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    url: str
    secrets: dict[str, bytes]  # webhook path name -> the secret it verifies with
    fail_first: bool = True
    fail_all: bool = False
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0

    def of(self, kind: str, webhook: str = "ops") -> list[Received]:
        return [r for r in self.received if r.kind == kind and r.webhook == webhook]

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        timestamp = request.headers.get("X-Tollway-Timestamp", "")
        expected = "sha256=" + hmac.new(self.secrets[name], timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        signature = request.headers.get("X-Tollway-Signature", "")
        event_id = request.headers.get("Idempotency-Key", "")
        if (not hmac.compare_digest(signature, expected) or abs(time.time() - int(timestamp or 0)) > 300
                or event_id != orjson.loads(body)["id"] or request.headers.get("X-Tollway-Event-Id") != event_id):
            self.bad_signatures += 1
            return web.Response(status=401)
        seen = any(r.event_id == event_id and r.webhook == name for r in self.received)
        status = 500 if self.fail_all or (self.fail_first and not seen) else 204
        self.received.append(Received(name, event_id, request.headers.get("X-Tollway-Event", ""), body, status))
        return web.Response(status=status)


@asynccontextmanager
async def webhook_receiver(secrets: dict[str, bytes]) -> AsyncIterator[Receiver]:
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    receiver = Receiver("", secrets)
    app.router.add_post("/hooks/{name}", receiver.handle)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    try:
        yield receiver
    finally:
        await runner.cleanup()
