"""A bare reverse proxy: the reference the data plane's overhead is measured against.

aiohttp on uvloop, no policy at all: a POST under ``/v1/`` is read whole, its JSON parsed (orjson) only to learn
whether the client asked for a stream, and forwarded unchanged, with the upstream's credential, to the same path
under ``--upstream`` over one pooled ``aiohttp.ClientSession``. A JSON answer is returned whole; a stream is
relayed piece by piece as it arrives. No auth, budgets, rate limits, usage records, request log or metrics:
what it costs is what any aiohttp proxy costs, so the data plane's figures over it are the price of its policy.

    python -m bench.bare_proxy --port 9200 --upstream http://127.0.0.1:9100/v1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import orjson
import uvloop
from aiohttp import web

_SESSION = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM = web.AppKey("upstream", str)
_HEADERS = web.AppKey("headers", dict[str, str])


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        is_stream = bool(orjson.loads(body).get("stream"))
    except (orjson.JSONDecodeError, AttributeError):
        return web.json_response({"error": {"message": "the body is not a JSON object"}}, status=400)
    app = request.app
    url = app[_UPSTREAM] + request.match_info["tail"]
    async with app[_SESSION].post(url, data=body, headers=app[_HEADERS]) as answer:
        content_type = answer.headers.get("Content-Type", "application/json")
        if not is_stream or answer.status != 200:
            return web.Response(body=await answer.read(), status=answer.status,
                                headers={"Content-Type": content_type})
        out = web.StreamResponse(status=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        try:
            await out.prepare(request)
            async for piece in answer.content.iter_any():
                await out.write(piece)
            await out.write_eof()
        except ConnectionResetError:  # the client left mid-stream (a load generator stopping): nothing to do
            pass
        return out


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _session(app: web.Application) -> AsyncIterator[None]:
    # One pool for the process; no per-host limit below the load generator's connection counts.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        app[_SESSION] = session
        yield


def create_app(upstream: str, credential: str) -> web.Application:
    app = web.Application()
    app[_UPSTREAM] = upstream.rstrip("/") + "/"
    app[_HEADERS] = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/{tail:.+}", forward)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int, app: web.Application) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=4096).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9100/v1")
    parser.add_argument("--credential-env", default="BENCH_UPSTREAM_KEY",
                        help="environment variable holding the upstream's API key")
    args = parser.parse_args()
    app = create_app(args.upstream, os.environ.get(args.credential_env, ""))
    uvloop.run(serve(args.host, args.port, app))


if __name__ == "__main__":
    main()
