"""A request the connection edge read whole, and the fast path that serves it without aiohttp's request machinery.

``framed`` finds, in the bytes one read brought, an HTTP/1.1 POST to an inference route with its
``Content-Length`` body and nothing after: the usual request of a keep-alive client. The edge
(``edge``) judges such a request for overload as it arrives, and serves it itself (``FastPath``):
``FastRequest`` is what the request path reads of it (``dataplane.api.pipeline.Inbound``), the route's handler is
the one aiohttp would call (``INFERENCE``, set by ``dataplane.api.app``). The request path writes its answer
itself: a whole one with ``FastRequest.send_answer``, a stream as it comes with ``FastStream`` (chunked, with
the protocol's flow control, as aiohttp's writer would); an error answer comes back as aiohttp's response and
``serialized`` writes it as aiohttp would. Every write of the fast path goes through its ``Outbox``
(``dataplane.outbox``): while the loop is busy it leaves on the loop's next turn, with the other answers of this
one. A head the edge cannot judge exactly, CORS: aiohttp's server, as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from multidict import CIMultiDict

from dataplane.outbox import Outbox

# METHOD SP request-target SP HTTP/1.x CRLF, nothing more (RFC 9112 section 3); a token method.
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^\x00-\x20\x7f]+ HTTP/1\.[01]\r?\n")


@dataclass(unsafe_hash=True)
class WholeRequest:
    """An inference request the edge read whole: where its parts lie in the bytes received."""

    path: Final[bytes]
    line_end: Final[int]  # the request line's end (the first header's start)
    head_end: Final[int]  # the blank line's start

    def __init__(self, path: bytes, line_end: int, head_end: int) -> None:
        self.path = path
        self.line_end = line_end
        self.head_end = head_end


def framed(data: bytes, paths: Container[bytes]) -> tuple[WholeRequest, int] | None:
    """The parts of the request whose head ``data`` holds, and its whole length (head and ``Content-Length``
    body), for an HTTP/1.1 POST to one of ``paths`` framed by ``Content-Length`` alone; else None. The request
    is whole when the length is ``len(data)``: the usual request of a keep-alive client (nothing after it). One
    whose head came alone (httpx, the official SDKs write head and body apart) is waited for by the edge."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    line = REQUEST_LINE.match(data)
    if line is None or not line.group().endswith(b"HTTP/1.1\r\n"):
        return None
    head = data[line.end():end + 2].lower()  # the header lines, each ending in CRLF
    if b"transfer-encoding" in head or b"close" in head or b"expect:" in head:
        return None
    at = head.find(b"content-length:")
    if at < 0 or (at > 0 and head[at - 1] != 10):  # a header of its own, not the end of another's name
        return None
    value = head[at + 15:head.find(b"\r\n", at)].strip()
    if not value.isdigit():
        return None
    path = line.group().split(b" ", 2)[1].split(b"?", 1)[0]
    return (WholeRequest(path, line.end(), end), end + 4 + int(value)) if path in paths else None


class FastRequest:
    """What the request path reads of a request (``dataplane.api.pipeline.Inbound``), for one the edge read whole
    and serves itself: the application, the headers, the connection, the body."""

    __slots__ = ("app", "body", "content_length", "headers", "outbox", "path", "protocol", "streamed")

    def __init__(self, app: web.Application, path: str, headers: CIMultiDict[str], body: bytes,
                 protocol: object, outbox: Outbox) -> None:
        self.app = app
        self.outbox = outbox  # the fast path's (``FastPath.outbox``)
        self.path = path
        self.headers = headers
        self.body = body
        self.content_length: int | None = len(body)
        self.protocol = protocol
        self.streamed = False  # the head of a stream was written (``FastStream``)

    @classmethod
    def of(cls, data: bytes, whole: WholeRequest, fast: FastPath, protocol: object) -> FastRequest | None:
        """The request, or None for a head the fast path leaves to aiohttp's parser (which answers or refuses
        it): more than 100 headers, a header line that is not ``token: value`` with visible characters, tabs and
        spaces only (no NUL, no obsolete line folding), a head past the edge's limit."""
        if whole.head_end > fast.max_header_bytes:
            return None
        block = data[whole.line_end:whole.head_end + 2]  # the header lines, each ending in CRLF
        if _HEADER_LINES.fullmatch(block) is None:
            return None
        lines = block.decode("latin-1").split("\r\n")
        lines.pop()  # after the last CRLF
        if len(lines) > 100:
            return None
        # (Lists, not generators: a generator resumes once an item, and this runs for every request.)
        headers: CIMultiDict[str] = CIMultiDict(
            [(name, value.strip(" \t")) for name, _, value in [line.partition(":") for line in lines]])
        return cls(fast.app, whole.path.decode("latin-1"), headers, data[whole.head_end + 4:], protocol,
                   fast.outbox)

    def send_answer(self, headers: Mapping[str, str], body: bytes) -> web.StreamResponse:
        """Write a whole 200 answer (JSON) to the connection, as ``serialized`` would write it, without building
        aiohttp's response first (the request path's usual answer); returns ``SENT`` for the edge."""
        protocol = self.protocol
        assert isinstance(protocol, BaseProtocol)
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            self.outbox.write(transport, answer_head(
                "200 OK", headers.items(), f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
                + body)
        return SENT


@dataclass(frozen=True)
class FastPath:
    """The routes the edge serves itself, for a request it read whole (anything else goes through aiohttp's
    server as before): the handlers of the inference routes, called with a ``FastRequest``, their answers written
    as they are (a stream by the request path itself, ``FastStream``)."""

    app: web.Application
    routes: Mapping[bytes, FastHandler]
    max_header_bytes: int
    max_body_bytes: int
    outbox: Outbox  # the answers' writes: see the module docstring


# Header lines ``token: value``, each ending in CRLF; the value visible characters, tabs and spaces only.
_HEADER_LINES = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")


def serialized(answer: web.Response) -> bytes:
    """An answer as the bytes aiohttp would write for it (status line, headers with Content-Length and Date,
    body)."""
    body = bytes(answer.body)  # type: ignore[arg-type]  # checked: bytes
    headers = ((name, value) for name, value in answer.headers.items() if name.lower() != "content-length")
    return answer_head(f"{answer.status} {answer.reason}", headers, f"Content-Length: {len(body)}\r\n") + body


def answer_head(status: str, headers: Iterable[tuple[str, str]], framing: str) -> bytes:
    """An answer's head as aiohttp writes it: the status line (``status``: "200 OK"), the headers, the body's
    framing (its header lines), the Date, the blank line."""
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
    return f"HTTP/1.1 {status}\r\n{lines}{framing}Date: {http_date()}\r\n\r\n".encode("latin-1")


class FastStream:
    """A streamed answer written straight to the connection of a ``FastRequest`` (``dataplane.api.streaming``):
    the head goes out with the first write, each write is one chunk of the chunked transfer coding, and a write
    waits while the client reads slower than the upstream sends (the protocol's flow control, as aiohttp's
    writer does). A connection gone raises ``ConnectionResetError``, as aiohttp's does."""

    __slots__ = ("_head", "_protocol", "_request")

    def __init__(self, request: FastRequest, headers: Mapping[str, str]) -> None:
        protocol = request.protocol
        assert isinstance(protocol, BaseProtocol)
        self._protocol = protocol
        self._request = request
        self._head = answer_head("200 OK", headers.items(), "Transfer-Encoding: chunked\r\n")

    async def write(self, data: bytes) -> None:
        if data:
            await self._send(b"%x\r\n%b\r\n" % (len(data), data))

    async def write_eof(self, data: bytes = b"") -> None:
        """The last chunk and the end of the body, in one write."""
        await self._send(b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n")

    async def _send(self, out: bytes) -> None:
        protocol = self._protocol
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if self._head:
            out, self._head = self._head + out, b""
            self._request.streamed = True
        self._request.outbox.write(transport, out)
        if protocol.writing_paused:  # (by the writes before this one: this one waits in the outbox)
            await protocol._drain_helper()  # what aiohttp's StreamWriter awaits: resumed, or the connection lost


# What the handler of a ``FastRequest`` returns for an answer it wrote itself (``FastRequest.send_answer``, a
# stream ``FastStream`` wrote): nothing is left to send.
SENT = web.StreamResponse()

_date: tuple[int, str] = (0, "")


def http_date() -> str:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]


FastHandler = Callable[[FastRequest], Awaitable[web.StreamResponse]]
# The inference routes, path -> handler (``dataplane.api.app``): what the edge sheds early and may serve itself.
INFERENCE: web.AppKey[Mapping[bytes, FastHandler]] = web.AppKey("inference")
