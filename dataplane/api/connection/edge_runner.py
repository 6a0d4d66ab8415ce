"""The server that makes ``EdgeHandler`` connections (``dataplane.api.connection.edge``), and its runner.

``EdgeRunner`` is ``web.AppRunner`` with aiohttp's own limits set from the edge's and its server made by
``EdgeServer``: every connection an ``EdgeHandler``, told the inference routes (their overload answers, written
as they are, ``shed_answer``) and the fast path (``dataplane.api.connection.whole_request.FastPath``) when it is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web, web_protocol

from dataplane.api.connection.edge import LINGER_S, Edge, EdgeHandler, EdgeRefusal, raw_answer
from dataplane.api.connection.overload import OVERLOADED
from dataplane.api.connection.whole_request import INFERENCE, FastHandler, FastPath
from dataplane.outbox import Outbox


def shed_answer(path: bytes) -> bytes:
    """The edge's overload refusal for an inference route (the connection kept)."""
    refusal = EdgeRefusal(503, OVERLOADED.type, OVERLOADED.code or "overloaded", OVERLOADED.message)
    return raw_answer(path.decode("latin-1"), refusal, "Retry-After: 1\r\nx-tollway-shed: edge\r\n")


class EdgeServer(web.Server):
    """aiohttp's server making ``EdgeHandler`` connections."""

    def __init__(self, *args: Any, edge: Edge, inference: Mapping[bytes, FastHandler], fast: FastPath | None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._edge = edge
        self._shed_answers = {path: shed_answer(path) for path in inference}
        self._fast = fast

    def __call__(self) -> web_protocol.RequestHandler:
        return EdgeHandler(self, loop=self._loop, limits=self._edge.limits, events=self._edge.events,
                           overload=self._edge.overload, shed_answers=self._shed_answers, fast=self._fast,
                           **self._kwargs)


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through ``EdgeServer``, with aiohttp's own limits set: the
    keep-alive timeout (aiohttp: an hour), at most 100 header lines of at most 8 KiB each (the total is the edge's
    ``max_header_bytes``), and how long the unread rest of a refused body is drained before the connection closes
    (``LINGER_S``; aiohttp: 10 s). Other keyword arguments go to ``web.AppRunner``."""

    def __init__(self, app: web.Application, *, edge: Edge, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=edge.limits.keepalive_timeout_s, max_headers=100,
                         max_field_size=8190, lingering_time=LINGER_S, **kwargs)
        self._edge = edge

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        app = self.app
        routes = app.get(INFERENCE, {})
        limits = self._edge.limits
        fast = FastPath(app, routes, limits.max_header_bytes, limits.max_body_bytes,
                        Outbox(self._edge.overload.busy)) if routes and self._edge.fast else None
        return EdgeServer(plain.request_handler, request_factory=plain.request_factory,
                          handler_cancellation=plain.handler_cancellation, loop=plain._loop, edge=self._edge,
                          inference=routes, fast=fast, **plain._kwargs)
