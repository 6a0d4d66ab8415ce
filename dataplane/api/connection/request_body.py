"""Reading a request's body on aiohttp's path: the request path's one way (``dataplane.api.pipeline``), with the
edge's body limits (``dataplane.api.connection.edge.EdgeLimits``): a minimum rate after a grace, broken chunked framing
refused. (The fast path's bodies arrived whole: ``dataplane.api.connection.whole_request``.)
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dataplane.api.connection.edge import Edge, EdgeRefusal


async def read_body(request: web.Request, limit: int, edge: Edge) -> bytes:
    """The request body, at most ``limit`` bytes (``web.HTTPRequestEntityTooLarge`` beyond), arriving at
    ``min_body_bytes_per_s`` after a grace of ``body_timeout_s`` (``EdgeRefusal`` 408 otherwise; 400 for broken
    chunked framing)."""
    content = request.content
    try:
        if content.is_eof():  # all of it is here already (most requests): no timer, nothing else to work out
            return await request.read()
        limits = edge.limits
        start = asyncio.get_running_loop().time()
        length = request.content_length
        rate = max(1, limits.min_body_bytes_per_s)
        async with asyncio.timeout(limits.body_timeout_s + (length or 0) / rate) as deadline:
            if length is not None:
                return await request.read()
            chunks: list[bytes] = []
            size = 0
            async for chunk in content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                chunks.append(chunk)
                # Without a declared length, each byte received earns the time the minimum rate allows it.
                deadline.reschedule(max(deadline.when() or 0.0, start + limits.body_timeout_s + size / rate))
            return b"".join(chunks)
    except TimeoutError:
        edge.events.counts["body_timeout"] += 1
        raise EdgeRefusal(408, "invalid_request_error", "request_timeout",
                          f"the request body did not arrive at {edge.limits.min_body_bytes_per_s} bytes a "
                          "second") from None
    except HttpProcessingError:
        raise EdgeRefusal(400, "invalid_request_error", "malformed_request",
                          "the request body's framing is not valid") from None
