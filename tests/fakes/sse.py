"""What the fakes share: sending a stream's frames, optionally dying (closing the socket) part way."""

from __future__ import annotations

from aiohttp import web


async def send_frames(request: web.Request, resp: web.StreamResponse, frames: list[bytes],
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
