"""The upstream connection's framing, byte for byte, against a scripted raw-socket upstream.

llhttp parses; these tests hold the contract around it: every well-formed framing is read whole (and its
connection reused when the upstream keeps it), every malformed one is a ``ValueError`` — the adapters'
``protocol`` failure — on a connection that is closed, never a hang, another exception or a pooled socket.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from dataplane.upstream.client import Response, UpstreamClient
from tests.fakes.scripted_upstream import scripted_upstream

OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"


@asynccontextmanager
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient()
    try:
        yield c
    finally:
        await c.close()


async def request(c: UpstreamClient, url: str, timeout_s: float = 2.0) -> Response:
    deadline = asyncio.get_running_loop().time() + timeout_s
    return await c.post(url + "/v1/chat/completions", "Content-Type: application/json\r\n", b"{}",
                        connect_timeout_s=1.0, read_timeout_s=timeout_s, deadline=deadline)


async def fetch(c: UpstreamClient, url: str, timeout_s: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    resp = await request(c, url, timeout_s)
    body = await resp.read(deadline=asyncio.get_running_loop().time() + timeout_s)
    resp.release()
    return resp.status, resp.headers, body


def bytewise(answer: bytes) -> list[bytes]:
    return [answer[i:i + 1] for i in range(len(answer))]


# -- well-formed framings

WELL_FORMED = {
    "content-length": (OK + b"Content-Length: 5\r\n\r\nhello", b"hello"),
    "content-length zero": (OK + b"Content-Length: 0\r\n\r\n", b""),
    "no content": (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    "chunked": (CHUNKED + b"4\r\nWiki\r\n6\r\npedia \r\n0\r\n\r\n", b"Wikipedia "),
    "upper-case hex sizes": (CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
    "chunk extensions": (CHUNKED + b"4;name=value;flag\r\nWiki\r\n6;q=\"quoted\"\r\npedia \r\n0;last\r\n\r\n",
                         b"Wikipedia "),
    "trailers": (CHUNKED + b"4\r\nWiki\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n", b"Wiki"),
    "100 continue first": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok", b"ok"),
    "103 early hints first": (b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                              b"HTTP/1.1 102 Processing\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok", b"ok"),
    "http/1.0 keep-alive": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    "status without reason": (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    "error status": (b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 4\r\n\r\nslow", b"slow"),
    # Apache with mod_http2 offers h2c on ordinary answers: an offer, not a switch.
    "upgrade offered": (OK + b"Upgrade: h2,h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok", b"ok"),
}


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", list(WELL_FORMED))
async def test_well_formed_answers_are_read_whole_and_their_connection_reused(name: str, split: bool) -> None:
    answer, body = WELL_FORMED[name]
    async with scripted_upstream(bytewise(answer) if split else answer, pause_s=0.0005 if split else 0) as up, \
            client() as c:
        for _ in range(2):
            status, _, got = await fetch(c, up.url)
            assert got == body
            assert status == int(answer.rsplit(b"HTTP/1.", 1)[1][2:5])
        assert (up.connections, len(up.requests)) == (1, 2)
        assert c.idle_connections() == 1


async def test_headers_lower_cased_joined_trimmed_and_neither_interim_nor_trailer_headers_kept() -> None:
    answer = (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK + b"Content-Type: application/json  \r\n"
              b"X-Many: a\r\nx-many: b\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n")
    async with scripted_upstream(answer) as up, client() as c:
        _, headers, body = await fetch(c, up.url)
    assert body == b"{}"
    assert headers == {"content-type": "application/json", "x-many": "a, b", "transfer-encoding": "chunked"}


async def test_a_body_until_close_is_read_whole_and_the_connection_dropped() -> None:
    for answer in (OK + b"Content-Type: text/plain\r\n\r\nuntil the end",
                   b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
                   OK + b"Connection: close\r\n\r\nuntil the end"):
        async with scripted_upstream(bytewise(answer), keep_open=False) as up, client() as c:
            assert (await fetch(c, up.url))[2] == b"until the end"
            assert c.idle_connections() == 0


async def test_connection_close_with_a_length_is_not_pooled() -> None:
    answer = OK + b"Connection: close\r\nContent-Length: 2\r\n\r\nok"
    async with scripted_upstream(answer, keep_open=False) as up, client() as c:
        for _ in range(2):
            assert (await fetch(c, up.url))[2] == b"ok"
        assert c.idle_connections() == 0 and up.connections == 2


async def test_one_connection_carries_answers_of_every_framing_in_turn() -> None:
    answers = [OK + b"Content-Length: 3\r\n\r\none", CHUNKED + b"3;x=y\r\ntwo\r\n0\r\nT: 1\r\n\r\n",
               b"HTTP/1.1 100 Continue\r\n\r\n" + OK + b"Content-Length: 5\r\n\r\nthree",
               b"HTTP/1.1 204 No Content\r\n\r\n", OK + b"Content-Length: 4\r\n\r\nfour"]
    async with scripted_upstream(lambda n: answers[n]) as up, client() as c:
        got = [(await fetch(c, up.url))[2] for _ in answers]
        assert got == [b"one", b"two", b"three", b"", b"four"]
        assert up.connections == 1


async def test_chunks_reach_the_reader_as_they_arrive() -> None:
    pieces = [CHUNKED, b"6\r\npiece0\r\n", b"6\r\npiece1\r\n", b"6;ext\r\npiece2\r\n", b"0\r\n\r\n"]
    async with scripted_upstream(pieces, pause_s=0.05) as up, client() as c:
        resp = await request(c, up.url)
        got = []
        while chunk := await resp.read_some():
            got.append(chunk)
        resp.release()
        assert got == [b"piece0", b"piece1", b"piece2"]
        assert c.idle_connections() == 1


# -- malformed framings: each a ValueError on a closed connection

MALFORMED = {
    "not http": b"SMTP ready\r\n\r\n",
    "no status code": b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
    "two-digit status": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "four-digit status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "status below 100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "letters in status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "http/2 status line": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "http/0.9 version": b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    "bare LF line ends": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "space before colon": OK + b"Content-Length : 2\r\n\r\nok",
    "no colon": OK + b"Content-Length 2\r\n\r\nok",
    "folded header": OK + b"X-A: 1\r\n continued\r\nContent-Length: 2\r\n\r\nok",
    "NUL in a value": OK + b"X-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "letters in content-length": OK + b"Content-Length: x\r\n\r\n",
    "negative content-length": OK + b"Content-Length: -1\r\n\r\n",
    "content-length overflow": OK + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "two content-lengths": OK + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nok",
    "content-length list": OK + b"Content-Length: 2, 2\r\n\r\nok",
    "content-length and chunked": OK + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "chunked and content-length": OK + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "gzip transfer-encoding": OK + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "identity transfer-encoding": OK + b"Transfer-Encoding: identity\r\n\r\nabc",
    "gzip then chunked": OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "chunked then gzip": OK + b"Transfer-Encoding: chunked, gzip\r\n\r\nabc",
    "two transfer-encodings": OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"2\r\nok\r\n0\r\n\r\n",
    "gzip content-encoding": OK + b"Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\nab",
    "chunk size not hex": CHUNKED + b"zz\r\nab\r\n0\r\n\r\n",
    "chunk size 0x": CHUNKED + b"0x2\r\nab\r\n0\r\n\r\n",
    "chunk size signed": CHUNKED + b"+2\r\nab\r\n0\r\n\r\n",
    "chunk size negative": CHUNKED + b"-2\r\nab\r\n0\r\n\r\n",
    "chunk size empty": CHUNKED + b"\r\nab\r\n0\r\n\r\n",
    "chunk size space": CHUNKED + b"2 \r\nab\r\n0\r\n\r\n",
    "chunk size overflow": CHUNKED + b"fffffffffffffffffff\r\nab\r\n0\r\n\r\n",
    "chunk longer than its size": CHUNKED + b"2\r\nabc\r\n0\r\n\r\n",
    "chunk without its CRLF": CHUNKED + b"2\r\nab0\r\n\r\n",
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nx",
    "bytes after the end": OK + b"Content-Length: 1\r\n\r\nab",
    "bytes after a chunked end": CHUNKED + b"1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    "a head past 64 KiB": OK + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(70))
                          + b"Content-Length: 2\r\n\r\nok",
    "trailers past 64 KiB": CHUNKED + b"2\r\nok\r\n0\r\n"
                            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(70)) + b"\r\n",
}


# Byte by byte as well, except the 70 KiB ones (too slow) and those whose fault follows a complete answer (then
# the answer may be read before the fault arrives: see the test after this one).
_AFTER_THE_END = {"bytes after the end", "bytes after a chunked end"}
_SPLITS = [pytest.param(name, split, id=f"{name}-{'byte-by-byte' if split else 'whole'}")
           for name in MALFORMED for split in (False, True)
           if not split or (len(MALFORMED[name]) < 2000 and name not in _AFTER_THE_END)]


@pytest.mark.parametrize(("name", "split"), _SPLITS)
async def test_malformed_answers_are_value_errors_and_the_connection_is_dropped(name: str, split: bool) -> None:
    answer = MALFORMED[name]
    async with scripted_upstream(bytewise(answer) if split else answer, keep_open=False,
                                 pause_s=0.0005 if split else 0) as up, client() as c:
        with pytest.raises(ValueError):
            await fetch(c, up.url)
        assert c.idle_connections() == 0


async def test_bytes_after_a_complete_answer_arriving_later_drop_the_connection() -> None:
    answer = [OK + b"Content-Length: 2\r\n\r\nok", b"HTTP/1.1 200 OK\r\n\r\n"]
    async with scripted_upstream(answer, pause_s=0.05) as up, client() as c:
        assert (await fetch(c, up.url))[2] == b"ok"  # read before the stray bytes came
        await asyncio.sleep(0.1)
        assert (await fetch(c, up.url))[2] == b"ok"
        assert up.connections == 2  # the first connection was closed when the stray bytes arrived


def endless(start: bytes, filler: bytes) -> Iterator[bytes]:
    return itertools.chain([start], itertools.repeat(filler, 10_000))


@pytest.mark.parametrize("answer", [
    endless(OK + b"X-Endless: ", b"x" * 512),
    endless(OK, b"X-Header: value\r\n" * 30),
    endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 20),
    endless(CHUNKED + b"1;", b"e" * 512),
    endless(CHUNKED + b"1\r\na\r\n0\r\nX-Endless: ", b"x" * 512),
    endless(CHUNKED + b"1\r\na\r\n0\r\n", b"X-Trailer: value\r\n" * 30),
], ids=["header value", "headers", "interim answers", "chunk extension", "trailer value", "trailers"])
async def test_endless_framing_without_body_is_cut_at_64_kib(answer: Iterator[bytes]) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with scripted_upstream(answer, pause_s=0.001) as up, client() as c:
        with pytest.raises(ValueError):
            await fetch(c, up.url, timeout_s=5.0)
        assert c.idle_connections() == 0
    assert loop.time() - began < 3.0  # cut at the byte limit, not at a timeout


async def test_a_malformed_second_answer_does_not_spoil_the_first() -> None:
    answers = [OK + b"Content-Length: 2\r\n\r\nok", OK + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"]
    async with scripted_upstream(lambda n: answers[n % 2]) as up, client() as c:
        assert (await fetch(c, up.url))[2] == b"ok"
        with pytest.raises(ValueError):
            await fetch(c, up.url)
        assert (await fetch(c, up.url))[2] == b"ok"  # a new connection
        assert up.connections == 2
