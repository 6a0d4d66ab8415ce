"""The overload manager: beyond its limit an inference request is refused at once (503 ``overloaded``,
``Retry-After``) in its API's format, most of them by the connection edge before aiohttp builds a request; while
the event loop lags, the limit drops below ``--max-in-flight``; when the load drops the data plane serves again.

Real sockets: a raw keep-alive connection for the edge's refusals, a fake upstream that holds requests.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import orjson
import pytest
from aiohttp import web

from dataplane.api.connection.overload import BUSY_LAG_S, BUSY_SHARE, FLOOR, WINDOW_S, Overload, busy_window, next_limit
from tests.routing.test_edge_connections import connect
from tests.routing.test_hard_edge import COMPLETION, HELLO, credential, data_plane, post
from tests.routing.world import chat_upstream

__all__ = ["credential"]  # the autouse fixture: the upstream credential in the environment


@pytest.mark.pure
def test_the_limit_shrinks_under_lag_grows_back_and_never_passes_its_bounds() -> None:
    # A lag above the target: down to 70 % of what is in flight, never under the floor.
    assert next_limit(512, 400, 0.03, 0.01, 64, 512) == 280
    assert next_limit(512, 50, 0.03, 0.01, 64, 512) == 64
    assert next_limit(100, 400, 0.03, 0.01, 64, 512) == 100  # never raised by a lag
    # Under half the target: grows by 1/8 (at least 1) up to max_in_flight.
    assert next_limit(64, 10, 0.001, 0.01, 64, 512) == 72
    assert next_limit(500, 10, 0.001, 0.01, 64, 512) == 512
    assert next_limit(2, 0, 0.001, 0.01, 2, 2) == 2
    # Between: kept.
    assert next_limit(300, 300, 0.007, 0.01, 64, 512) == 300


@pytest.mark.pure
def test_a_window_is_busy_by_its_lag_or_by_its_share_of_the_cpu() -> None:
    assert busy_window(BUSY_LAG_S, 0.0)  # callbacks waited for their turn
    assert busy_window(0.0, BUSY_SHARE)  # a lag the loop's millisecond clock cannot see, the thread never idle
    assert not busy_window(BUSY_LAG_S * 0.9, BUSY_SHARE * 0.9)


async def test_a_loop_full_of_short_callbacks_counts_as_busy_while_other_requests_are_in_flight() -> None:
    # Callbacks of 0.2 ms one after another: none waits long for its turn, but the loop's thread is on the CPU
    # all the time, so the loop counts as busy. Writes are held only with company in flight.
    overload = Overload(512)
    overload.start()
    loop = asyncio.get_running_loop()
    spinning = loop.time() + 3 * WINDOW_S

    def spin() -> None:
        until = time.perf_counter() + 0.0002
        while time.perf_counter() < until:
            pass
        if loop.time() < spinning:
            loop.call_soon(spin)

    try:
        overload.count = 2
        assert not overload.busy()  # nothing measured yet
        cpu, wall = time.thread_time(), time.perf_counter()
        loop.call_soon(spin)
        await asyncio.sleep(3 * WINDOW_S)
        if (time.thread_time() - cpu) / (time.perf_counter() - wall) < 0.75:
            pytest.skip("this thread got too little of its CPU to spin the loop (a loaded machine)")
        assert overload.utilization >= BUSY_SHARE
        assert overload.busy()
        overload.count = 1
        assert not overload.busy()  # a lone request: nothing to leave with
        overload.count = 2
        await asyncio.sleep(2.5 * WINDOW_S)  # an idle loop again
        assert overload.utilization < BUSY_SHARE
        assert not overload.busy()
    finally:
        overload.stop()
    assert overload.utilization == 0.0 and not overload.busy()


async def test_an_idle_loop_parks_the_timer_and_the_next_request_resumes_it() -> None:
    # An idle data plane does not wake 50 times a second: a window with nothing in flight parks the timer.
    overload = Overload(512)
    overload.start()
    try:
        assert overload.sampling
        await asyncio.sleep(2 * WINDOW_S)
        assert not overload.sampling
        overload.enter()  # a request on the request path: measured again
        assert overload.sampling
        await asyncio.sleep(2 * WINDOW_S)
        assert overload.sampling  # not while a request is in flight
        overload.count -= 1
        overload.hold()  # or one let through by the edge
        await asyncio.sleep(2 * WINDOW_S)
        assert overload.sampling
        overload.pending -= 1
        await asyncio.sleep(2 * WINDOW_S)
        assert not overload.sampling
    finally:
        overload.stop()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer on a keep-alive connection (framed by its Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5.0)
    return int(lines[0].split(" ")[1]), headers, body


def request(path: str, body: bytes, key: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


def gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{}})? (\S+)$", metrics, re.M)
    assert found, name
    return float(found.group(1))


async def test_beyond_the_limit_the_edge_refuses_at_once_in_the_apis_format_and_keeps_the_connection() -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(COMPLETION)

    async with chat_upstream(held) as up, data_plane(up, up, max_in_flight=2) as (url, key):
        busy = [asyncio.create_task(post(url, key, HELLO)) for _ in range(2)]
        await asyncio.sleep(0.3)
        reader, writer = await connect(url)
        chat = orjson.dumps(HELLO)
        messages = orjson.dumps({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        began = time.monotonic()
        answers = []
        for path, body in [("/v1/chat/completions", chat), ("/v1/messages", messages), ("/v1/embeddings", chat)]:
            writer.write(request(path, body, key))
            answers.append(await read_answer(reader))  # the same connection: kept alive
        assert time.monotonic() - began < 1.0
        for status, headers, _ in answers:
            assert status == 503 and headers["retry-after"] == "1"
            assert headers["x-tollway-shed"] == "edge"  # refused by the edge, before a request was built
        assert orjson.loads(answers[0][2])["error"]["code"] == "overloaded"  # OpenAI's envelope
        assert orjson.loads(answers[1][2]) == {"type": "error", "error": {
            "type": "api_error", "message": "the gateway is at capacity; retry shortly"}}  # Anthropic's (503)
        # A body in chunks is not the edge's to judge: the request path sheds it, in the same format.
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + key.encode()
                     + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + f"{len(chat):x}\r\n".encode() + chat
                     + b"\r\n0\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 503 and headers["retry-after"] == "1" and "x-tollway-shed" not in headers
        assert orjson.loads(body)["error"]["code"] == "overloaded"
        writer.close()
        metrics = await scrape(url)  # operations keep answering
        assert gauge(metrics, 'tollway_edge_events_total{event="shed"}') == 4
        assert gauge(metrics, "tollway_requests_in_flight") == 2
        release.set()
        assert [s for s, _, _ in await asyncio.gather(*busy)] == [200, 200]
        status, _, _ = await post(url, key, HELLO)
        assert status == 200  # recovered as soon as the load dropped


async def test_while_the_loop_lags_the_limit_drops_below_max_in_flight_and_comes_back() -> None:
    release = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(COMPLETION)

    in_flight = FLOOR + 16  # more than the floor, far less than max_in_flight

    async with chat_upstream(held) as up, data_plane(up, up, total_timeout_s=10.0, max_in_flight=1000,
                                                     overload_lag_s=0.01) as (url, key):
        busy = []
        for _ in range(in_flight):  # (client and data plane share this loop: a burst of 80 lags it 300 ms)
            busy.append(asyncio.create_task(post(url, key, HELLO)))
            await asyncio.sleep(0.01)
        for _ in range(50):
            await asyncio.sleep(0.1)
            metrics = await scrape(url)
            if gauge(metrics, "tollway_requests_in_flight") == in_flight \
                    and gauge(metrics, "tollway_requests_in_flight_limit") > in_flight:
                break
        probe = asyncio.create_task(post(url, key, HELLO))
        await asyncio.sleep(0.1)
        assert not probe.done()  # held too (by the upstream): under max_in_flight, no lag, no refusal
        loop = asyncio.get_running_loop()
        lagging = loop.time() + 0.8

        def hog() -> None:  # the loop kept busy, as by more requests than the core can serve
            time.sleep(0.05)  # each lag sample: 30 ms (a tick 20 ms after the last, within a 50 ms callback)
            if loop.time() < lagging:
                loop.call_soon(hog)

        loop.call_soon(hog)
        await asyncio.sleep(0.5)  # two windows of lag
        status, headers, body = await post(url, key, HELLO)
        assert status == 503 and headers["Retry-After"] == "1"
        assert orjson.loads(body)["error"]["code"] == "overloaded"
        metrics = await scrape(url)
        assert gauge(metrics, "tollway_requests_in_flight_limit") < in_flight + 1
        assert gauge(metrics, "tollway_event_loop_lag_seconds") > 0.01
        release.set()
        await asyncio.gather(*busy, probe)
        began = time.monotonic()
        while (await post(url, key, HELLO))[0] != 200:
            assert time.monotonic() - began < 5.0, "not serving again within 5 s of the load dropping"
            await asyncio.sleep(0.1)
