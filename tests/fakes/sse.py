"""What the fakes share: framing server-sent events and sending a stream's frames, optionally dying part way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web


def data_frame(data: Any) -> bytes:
    """``data: <json>`` and a blank line: an event with no name (chat and legacy completions chunks)."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def event_frame(kind: str, data: Any) -> bytes:
    """``event: <kind>``, ``data: <json>`` and a blank line: a named event (Responses and Messages streams)."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def send_frames(request: web.Request, resp: web.StreamResponse, frames: Iterable[bytes],
                      die_after: int = -1) -> web.StreamResponse:
    """Write ``frames`` one by one; with ``die_after`` >= 0, close the connection instead of frame ``die_after``."""
    for i, frame in enumerate(frames):
        if i == die_after:
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(frame)
    await resp.write_eof()
    return resp
