"""The connection edge, tried with raw sockets as a hostile or broken client would: slow heads, idle connections,
slow bodies, huge heads, ambiguous framing, garbage and too many connections. Each is answered in the API's own
format (never quoting what was sent), closed, and counted on ``/metrics``; a legitimate client keeps being served.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import orjson

from tests.routing.test_hard_edge import HELLO, credential, data_plane, healthy, post
from tests.routing.world import chat_upstream

__all__ = ["credential"]  # the autouse fixture: the upstream credential in the environment

FAST = {"header_timeout_s": 0.6, "keepalive_timeout_s": 0.8, "body_timeout_s": 0.4, "min_body_bytes_per_s": 1000}


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def answer(reader: asyncio.StreamReader, within: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one answer, then the connection must be closed by the data plane."""
    raw = await asyncio.wait_for(reader.read(), within)  # to EOF: the data plane closes
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def request_head(path: str = "/v1/chat/completions", extra: str = "", length: int = 0) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


async def edge_events(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        text = await r.text()
    return {m[1]: float(m[2]) for m in re.finditer(r'^tollway_edge_events_total\{event="(\w+)"\} (\S+)$', text, re.M)}


async def test_a_slow_head_is_answered_408_and_closed_while_a_client_is_served() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, **FAST) as (url, key):
        slow = [await connect(url) for _ in range(20)]
        began = time.monotonic()

        async def trickle(writer: asyncio.StreamWriter) -> None:
            for byte in request_head().decode():
                if writer.is_closing():
                    return
                writer.write(byte.encode())
                await asyncio.sleep(0.1)  # a byte every 100 ms: the head would take seconds

        tricklers = [asyncio.create_task(trickle(w)) for _, w in slow]
        status, _, _ = await post(url, key, HELLO)  # meanwhile, a legitimate request
        assert status == 200
        answers = await asyncio.gather(*(answer(r) for r, _ in slow))
        took = time.monotonic() - began
        for t in tricklers:
            t.cancel()
        assert {s for s, _, _ in answers} == {408}
        assert all(orjson.loads(b)["error"]["code"] == "request_timeout" for _, _, b in answers)
        assert took < 2.0, f"slow heads were held {took:.1f}s past a 0.6 s header timeout"
        assert (await edge_events(url))["header_timeout"] == 20


async def test_a_connection_that_sends_nothing_is_closed_at_the_idle_timeout() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, **FAST) as (url, _):
        reader, _ = await connect(url)
        began = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, without an answer
        assert time.monotonic() - began < 2.0


async def test_a_slow_body_is_answered_408_in_the_apis_format() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, **FAST) as (url, key):
        reader, writer = await connect(url)
        # 2,000 bytes may take 0.4 s + 2 s at the minimum rate; they come at 100 B/s.
        writer.write(request_head(extra=f"Authorization: Bearer {key}\r\n", length=2000))
        for _ in range(40):  # 10 bytes every 100 ms
            if writer.is_closing():
                break
            writer.write(b" " * 10)
            await asyncio.sleep(0.1)
        status, _, body = await answer(reader, within=8.0)  # closed once the rest is drained (2 s at most)
        assert status == 408 and orjson.loads(body)["error"]["code"] == "request_timeout"
        assert (await edge_events(url))["body_timeout"] == 1


async def test_a_head_past_60_kib_is_answered_431_before_it_is_buffered() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, _):
        reader, writer = await connect(url)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
        for i in range(9):  # 9 headers of 8,000 bytes (each line within aiohttp's own limit), and no end
            writer.write(f"x-pad-{i}: {'v' * 8000}\r\n".encode())
        await writer.drain()
        status, _, body = await answer(reader)
        assert status == 431 and orjson.loads(body)["error"]["code"] == "headers_too_large"


async def test_ambiguous_framing_is_refused_with_400_and_the_connection_closed() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, key):
        for head in (
            b"POST  /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n".encode(),
        ):
            reader, writer = await connect(url)
            writer.write(head)
            status, _, body = await answer(reader)  # and closed: ``answer`` reads to the end
            assert status == 400, body
            assert orjson.loads(body)["error"]["code"] == "malformed_request"
        assert (await edge_events(url))["malformed_request"] == 2


async def test_protocol_errors_never_quote_the_input_and_follow_the_paths_api() -> None:
    marker = "MARKER-9f8e7d"
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, _):
        for path, anthropic in (("/v1/chat/completions", False), ("/v1/messages", True)):
            reader, writer = await connect(url)
            writer.write(f"POST {path} HTTP/1.1\r\nHost: gw\r\nBad Header{marker}: x\r\n\r\n".encode())
            status, _, body = await answer(reader)
            assert status == 400 and marker.encode() not in body
            error = orjson.loads(body)
            if anthropic:
                assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
            else:
                assert error["error"]["code"] == "malformed_request"
        reader, writer = await connect(url)
        writer.write(f"\x16\x03\x01 {marker}\r\n\r\n".encode())  # TLS sent to a plain port, or any garbage
        status, _, body = await answer(reader)
        assert status == 400 and marker.encode() not in body and orjson.loads(body)["error"]["message"]


async def test_past_the_per_client_connection_limit_a_connection_is_answered_429() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, max_connections_per_client=3) as (url, key):
        held = [await connect(url) for _ in range(3)]
        reader, _ = await connect(url)
        status, _, body = await answer(reader)
        assert status == 429 and orjson.loads(body)["error"]["code"] == "too_many_connections"
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        status, _, _ = await post(url, key, HELLO)  # room again once they are closed
        assert status == 200
        assert (await edge_events(url))["client_connection_limit"] == 1
