"""The lean upstream HTTP/1.1 client against real servers on loopback: aiohttp apps, the bench's fast upstream,
and raw asyncio servers for pooling, timeouts and connections dying. The framing itself (every well-formed and
malformed answer, byte by byte) is ``test_upstream_framing.py``'s."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from bench.fast_upstream import _Protocol as FastUpstream
from dataplane.upstream.client import UpstreamClient

JSON_HEADERS = "Content-Type: application/json\r\n"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def aiohttp_server(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def client(idle_timeout_s: float = 30.0) -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient(idle_timeout_s=idle_timeout_s)
    try:
        yield c
    finally:
        await c.close()


async def post(c: UpstreamClient, url: str, body: bytes = b"{}", read_timeout_s: float = 2.0,
               timeout_s: float = 2.0) -> tuple[int, bytes]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    resp = await c.post(url, JSON_HEADERS, body, connect_timeout_s=1.0, read_timeout_s=read_timeout_s,
                        deadline=deadline)
    data = await resp.read(deadline=deadline)
    resp.release()
    return resp.status, data


def echo_app(peers: list[object]) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        if request.query.get("chunked"):
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            for i in range(5):
                await resp.write(b"piece%d;" % i)
                await asyncio.sleep(0.01)
            await resp.write_eof()
            return resp
        if request.query.get("close"):
            return web.Response(body=body, headers={"Connection": "close"})
        return web.json_response({"got": orjson.loads(body), "host": request.host,
                                  "auth": request.headers.get("Authorization")}, status=201)
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    return app


async def test_content_length_answers_reuse_one_connection() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as port, client() as c:
        for i in range(3):
            status, body = await post(c, f"http://127.0.0.1:{port}/v1/chat", orjson.dumps({"n": i}))
            assert status == 201
            assert orjson.loads(body) == {"got": {"n": i}, "host": f"127.0.0.1:{port}", "auth": None}
        assert len(set(peers)) == 1  # one source port: one connection carried all three
        assert c.idle_connections() == 1


async def test_large_answers_pause_reading_and_the_connection_stays_usable() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: well past the buffer's high-water mark

    async def large(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=big)
    app = web.Application()
    app.router.add_post("/", large)
    async with aiohttp_server(app) as port, client() as c:
        url = f"http://127.0.0.1:{port}/"
        resp = await c.post(url, "", b"{}", connect_timeout_s=1, read_timeout_s=2,
                            deadline=asyncio.get_running_loop().time() + 5)
        await asyncio.sleep(0.2)  # let the upstream fill the buffer while nobody reads
        assert await resp.read() == big
        resp.release()
        resp = await c.post(url, "", b"{}", connect_timeout_s=1, read_timeout_s=2,
                            deadline=asyncio.get_running_loop().time() + 5)
        await asyncio.sleep(0.2)
        resp.release()  # unread: the connection is drained or dropped, never reused half-read
        assert await post(c, url, timeout_s=5) == (200, big)


async def test_chunked_answer_read_as_it_arrives() -> None:
    async with aiohttp_server(echo_app([])) as port, client() as c:
        resp = await c.post(f"http://127.0.0.1:{port}/s?chunked=1", JSON_HEADERS, b"{}", connect_timeout_s=1,
                            read_timeout_s=1, deadline=asyncio.get_running_loop().time() + 2)
        assert resp.headers["transfer-encoding"] == "chunked"
        pieces = []
        while chunk := await resp.read_some():
            pieces.append(chunk)
        resp.release()
        assert b"".join(pieces) == b"piece0;piece1;piece2;piece3;piece4;"
        assert len(pieces) > 1  # delivered as they came, not at the end
        assert c.idle_connections() == 1
        assert (await post(c, f"http://127.0.0.1:{port}/again"))[0] == 201


async def test_connection_close_is_not_pooled() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as port, client() as c:
        assert await post(c, f"http://127.0.0.1:{port}/x?close=1", b"abc") == (200, b"abc")
        assert c.idle_connections() == 0
        assert (await post(c, f"http://127.0.0.1:{port}/x"))[0] == 201
        assert len(set(peers)) == 2


def one_answer_then_close(received: list[bytes], answer: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received.append(head + await reader.readexactly(length))
        writer.write(answer)
        await writer.drain()
        writer.close()  # keep-alive was promised, but the server closes the idle connection anyway
    return handle


async def test_server_closing_an_idle_connection_is_survived_without_resending() -> None:
    received: list[bytes] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with raw_server(one_answer_then_close(received, answer)) as port, client() as c:
        for _ in range(3):
            assert await post(c, f"http://127.0.0.1:{port}/v1") == (200, b"ok")
            await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert len(received) == 3  # each request sent exactly once, each on a fresh connection


async def test_connection_dying_after_the_request_fails_and_is_not_retried() -> None:
    received: list[bytes] = []
    async with raw_server(one_answer_then_close(received, b"")) as port, client() as c:
        with pytest.raises(ConnectionError):
            await post(c, f"http://127.0.0.1:{port}/v1", b'{"charge": 1}')
        assert len(received) == 1  # the upstream may have acted on it: never sent twice


async def test_death_mid_body_is_a_connection_error() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    async with raw_server(one_answer_then_close([], answer)) as port, client() as c:
        resp = await c.post(f"http://127.0.0.1:{port}/", "", b"{}", connect_timeout_s=1, read_timeout_s=1,
                            deadline=asyncio.get_running_loop().time() + 2)
        with pytest.raises(ConnectionError):
            await resp.read()
        resp.release()
        assert c.idle_connections() == 0


async def test_read_timeout_and_deadline() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)
    async with raw_server(slow) as port, client() as c:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await post(c, f"http://127.0.0.1:{port}/", timeout_s=0.3)
        assert 0.25 < loop.time() - started < 1.5


async def test_connect_refused_is_a_connection_error() -> None:
    async with raw_server(one_answer_then_close([], b"")) as port:
        pass  # closed: nothing listens on the port any more
    async with client() as c:
        with pytest.raises(ConnectionError):
            await post(c, f"http://127.0.0.1:{port}/")


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as port, client(idle_timeout_s=0.2) as c:
        await post(c, f"http://127.0.0.1:{port}/")
        assert c.idle_connections() == 1
        await asyncio.sleep(0.5)
        assert c.idle_connections() == 0
        await post(c, f"http://127.0.0.1:{port}/")
        assert len(set(peers)) == 2


async def test_concurrent_requests_each_get_a_connection() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as port, client() as c:
        results = await asyncio.gather(*(post(c, f"http://127.0.0.1:{port}/", orjson.dumps({"i": i}))
                                         for i in range(20)))
        assert [orjson.loads(b)["got"]["i"] for _, b in results] == list(range(20))
        assert 1 <= c.idle_connections() <= 20


async def test_fast_upstream_json_and_stream_on_one_connection() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FastUpstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with client() as c:
            for stream in (False, True, False):
                body = orjson.dumps({"model": "m", "messages": [], "stream": stream,
                                     "stream_options": {"include_usage": True}})
                status, data = await post(c, f"http://127.0.0.1:{port}/v1/chat/completions", body)
                assert status == 200
                if stream:
                    assert data.endswith(b"data: [DONE]\n\n") and data.count(b"data: ") == 14
                else:
                    assert orjson.loads(data)["usage"]["total_tokens"] == 28
            assert c.idle_connections() == 1
    finally:
        server.close()


async def test_abandoned_body_is_drained_then_the_connection_reused() -> None:
    async def late_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        writer.close()
    async with raw_server(late_end) as port, client() as c:
        for _ in range(2):
            resp = await c.post(f"http://127.0.0.1:{port}/", "", b"{}", connect_timeout_s=1, read_timeout_s=1,
                                deadline=asyncio.get_running_loop().time() + 2)
            assert await resp.read_some() == b"first"
            resp.release()  # before the terminating chunk arrived
            assert c.idle_connections() == 0
            await asyncio.sleep(0.15)
            assert c.idle_connections() == 1


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=tmp, check=True, capture_output=True)
    return tmp / "cert.pem", tmp / "key.pem"


async def test_https_upstream_verified_with_the_given_ca(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers), server_tls) as port:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with client() as c:  # the system's CAs do not know this certificate
            with pytest.raises(ssl.SSLError):
                await post(c, f"https://127.0.0.1:{port}/")
        c2 = UpstreamClient(ssl_context=trusting)
        try:
            for _ in range(2):
                status, body = await post(c2, f"https://127.0.0.1:{port}/v1", b'{"tls": true}')
                assert status == 201 and orjson.loads(body)["got"] == {"tls": True}
            assert len(set(peers)) == 1
        finally:
            await c2.close()


async def test_the_pool_keeps_as_many_idle_connections_as_it_is_sized_for() -> None:
    peers: list[object] = []
    async with aiohttp_server(echo_app(peers)) as port:
        for size, kept in ((8, 8), (3, 3)):
            c = UpstreamClient(max_idle_per_origin=size)
            try:
                url = f"http://127.0.0.1:{port}/v1/chat"
                for _ in range(2):  # two bursts of 8 at once: the second reuses what the pool kept
                    assert {s for s, _ in await asyncio.gather(*(post(c, url, b"{}") for _ in range(8)))} == {201}
                assert c.idle_connections() == kept
            finally:
                await c.close()
        # Sized 8: the 8 connections of the first burst carried the second; sized 3: 5 were opened again.
        assert len(set(peers)) == 8 + 8 + 5
