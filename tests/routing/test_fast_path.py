"""The fast path: a whole inference request is served by the connection edge itself, with the same handlers and
the same answer as through aiohttp's server (a stream chunked as it comes, at the client's pace), on a connection
kept alive and in order; a head aiohttp must judge still goes through aiohttp. Raw sockets, as a keep-alive client
sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import openai
import orjson
from aiohttp import web

from tests.routing.test_edge_connections import connect
from tests.routing.test_hard_edge import COMPLETION, HELLO, credential, data_plane, healthy
from tests.routing.test_overload import read_answer, request
from tests.routing.world import chat_upstream

__all__ = ["credential"]  # the autouse fixture: the upstream credential in the environment


async def test_whole_requests_are_answered_by_the_edge_on_one_kept_alive_connection() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        for i in range(3):
            writer.write(request("/v1/chat/completions", orjson.dumps(HELLO), key)[:-len(orjson.dumps(HELLO))]
                         .replace(b"Host: gw\r\n", f"Host: gw\r\nx-request-id: fast-{i}\r\n".encode())
                         + orjson.dumps(HELLO))
            status, headers, body = await read_answer(reader)
            assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "fine"
            assert headers["x-request-id"] == f"fast-{i}" and headers["x-tollway-deployment"] == "gpt-eu1"
            assert "server" not in headers and headers["date"].endswith("GMT")  # written by the edge itself
        writer.close()
        # The same request through aiohttp's server (head and body in two writes): the same answer.
        reader, writer = await connect(url)
        whole = request("/v1/chat/completions", orjson.dumps(HELLO), key)
        writer.write(whole[:40])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(whole[40:])
        status, headers, body = await read_answer(reader)
        assert status == 200 and "server" in headers
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "fine"
        writer.close()


def chunk(content: str) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                     "choices": [{"index": 0, "delta": {"content": content},
                                                  "finish_reason": None}]}) + b"\n\n"


def streaming(pieces: list[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def events(request: web.Request) -> web.StreamResponse:
        if not (await request.json()).get("stream"):
            return web.json_response(COMPLETION)
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        for piece in pieces:
            await answer.write(chunk(piece))
        await answer.write(b"data: [DONE]\n\n")
        return answer
    return events


async def read_stream(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """A streamed answer on a keep-alive connection: its head, and the text its chunks carry (chunked coding
    decoded by hand, so the framing itself is checked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"Transfer-Encoding: chunked" in head
    body = b""
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).strip(), 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        assert data.endswith(b"\r\n")
        if size == 0:
            break
        body += data[:-2]
    assert body.endswith(b"data: [DONE]\n\n")
    text = "".join(orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in body.split(b"\n\n") if line.startswith(b"data: {") and b'"choices":[{' in line)
    return head, text


async def test_a_stream_is_written_by_the_edge_chunked_and_the_connection_kept_alive() -> None:
    pieces = [f"part {i} " for i in range(20)]
    async with chat_upstream(streaming(pieces)) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        streamed = orjson.dumps({**HELLO, "stream": True})
        for _ in range(2):  # twice on one connection: the end of a stream leaves it ready for the next request
            writer.write(request("/v1/chat/completions", streamed, key))
            head, text = await read_stream(reader)
            assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
            assert b"Server:" not in head  # written by the edge itself
            assert text == "".join(pieces)
        writer.write(request("/v1/chat/completions", orjson.dumps(HELLO), key))
        status, _, body = await read_answer(reader)
        assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "fine"
        writer.close()
        # Through aiohttp's server (head and body in two writes): the same stream.
        reader, writer = await connect(url)
        whole = request("/v1/chat/completions", streamed, key)
        writer.write(whole[:40])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(whole[40:])
        head, text = await read_stream(reader)
        assert b"Server:" in head and text == "".join(pieces)
        writer.close()


async def test_a_stream_to_a_client_that_reads_late_arrives_whole() -> None:
    pieces = ["x" * 4000 + f" {i}" for i in range(400)]  # ~1.6 MB: past the transport's write buffer
    async with chat_upstream(streaming(pieces)) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        writer.write(request("/v1/chat/completions", orjson.dumps({**HELLO, "stream": True}), key))
        await asyncio.sleep(0.5)  # not reading: the data plane waits for the client (flow control)
        _, text = await read_stream(reader)
        assert text == "".join(pieces)
        writer.close()


async def test_a_head_aiohttp_must_judge_does_not_take_the_fast_path() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        writer.write(request("/v1/chat/completions", orjson.dumps(HELLO), key)
                     .replace(b"Host: gw\r\n", b"Host: gw\r\nX-Marker: a\x00b\r\n"))
        raw = await asyncio.wait_for(reader.read(), 5)
        assert raw.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")  # aiohttp's parser judged it
        assert b"a\x00b" not in raw and b"X-Marker" not in raw
        writer.close()


async def test_a_head_sent_before_its_body_is_gathered_and_served_by_the_edge() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        whole = request("/v1/chat/completions", orjson.dumps(HELLO), key)
        head_end = whole.index(b"\r\n\r\n") + 4
        for _ in range(2):  # the head, then the body in two pieces (as httpx writes them, and slower)
            writer.write(whole[:head_end])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(whole[head_end:head_end + 5])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(whole[head_end + 5:])
            status, headers, body = await read_answer(reader)
            assert status == 200 and "server" not in headers  # the edge's answer
            assert orjson.loads(body)["choices"][0]["message"]["content"] == "fine"
        writer.close()


async def test_the_official_sdk_is_served_by_the_edge_json_and_streams() -> None:
    pieces = ["one ", "two"]
    async with chat_upstream(streaming(pieces)) as up, data_plane(up, up) as (url, key):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}])
            assert "server" not in raw.headers and raw.parse().choices[0].message.content == "fine"
            async with client.chat.completions.with_streaming_response.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}], stream=True) as streamed:
                assert "server" not in streamed.headers
                text = "".join([c.choices[0].delta.content or "" async for c in await streamed.parse()
                                if c.choices])
            assert text == "".join(pieces)
        finally:
            await client.close()


async def test_a_body_slower_than_the_body_timeout_is_left_to_aiohttp_and_its_rate_rule() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, body_timeout_s=0.3, min_body_bytes_per_s=1
                                                        ) as (url, key):
        reader, writer = await connect(url)
        whole = request("/v1/chat/completions", orjson.dumps(HELLO), key)
        head_end = whole.index(b"\r\n\r\n") + 4
        writer.write(whole[:head_end + 3])
        await writer.drain()
        await asyncio.sleep(0.6)  # past the gathering's bound: aiohttp's parser takes the request
        writer.write(whole[head_end + 3:])
        status, headers, body = await read_answer(reader)
        assert status == 200 and "server" in headers  # aiohttp's answer
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "fine"
        writer.close()


async def test_a_request_sent_while_one_is_served_is_answered_after_it_in_order() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response({**COMPLETION, "id": (await request.json())["messages"][0]["content"]})

    async with chat_upstream(slow) as up, data_plane(up, up) as (url, key):
        reader, writer = await connect(url)
        for label in ("first", "second"):
            body = orjson.dumps({**HELLO, "messages": [{"role": "user", "content": label}]})
            writer.write(request("/v1/chat/completions", body, key))
            await writer.drain()
            await asyncio.sleep(0.05)
        answers = [await read_answer(reader) for _ in range(2)]
        assert [s for s, _, _ in answers] == [200, 200]
        assert [orjson.loads(b)["id"] for _, _, b in answers] == ["first", "second"]
        writer.close()


async def test_a_connection_idle_after_fast_answers_is_closed_at_the_keepalive_timeout() -> None:
    async with chat_upstream(healthy) as up, data_plane(up, up, keepalive_timeout_s=0.8) as (url, key):
        reader, writer = await connect(url)
        writer.write(request("/v1/chat/completions", orjson.dumps(HELLO), key))
        status, headers, _ = await read_answer(reader)
        assert status == 200 and "server" not in headers
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the data plane, idle
        writer.close()


async def test_a_refusal_written_at_once_still_follows_the_answer_before_it() -> None:
    # On a busy loop the answer of a request served by the edge leaves on the loop's next turn
    # (``dataplane.outbox``); a refusal the edge writes at once (a head growing past its limit, sent while that
    # answer was on its way) comes after it on the wire, never before.
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.json_response(COMPLETION)

    async with chat_upstream(slow) as up, data_plane(up, up, busy=True, max_header_bytes=4096) as (url, key):
        reader, writer = await connect(url)
        writer.write(request("/v1/chat/completions", orjson.dumps(HELLO), key))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nx-padding: " + b"a" * 6000)  # no end
        await writer.drain()
        first = await read_answer(reader)
        assert first[0] == 200 and orjson.loads(first[2])["choices"][0]["message"]["content"] == "fine"
        second = await read_answer(reader)
        assert second[0] == 431 and orjson.loads(second[2])["error"]["code"] == "headers_too_large"
        writer.close()
