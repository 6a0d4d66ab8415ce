"""One upstream HTTP/1.1 connection: an asyncio protocol that parses answers as their bytes arrive.

``Connection`` feeds every byte it receives to llhttp (Node's HTTP parser, through ``httptools``) inside
``data_received``, so a reader usually finds a whole answer ready without waiting, and the edge cases of the
framing (status line, header syntax, Content-Length, chunk sizes, extensions and trailers, interim 1xx answers)
are the parser's, not ours. Body bytes queue until read (the socket stops being read past a high-water mark).

On top of llhttp this module holds the rules of an answer we accept: HTTP/1.0 or 1.1, no protocol switch,
``Transfer-Encoding`` exactly ``chunked`` (llhttp would read any other coding until close), no content coding,
at most 64 KiB of head (and of trailers), and no more than 64 KiB of framing in a row without a body byte (an
endless chunk extension, trailer or stream of interim answers). Anything else is a malformed answer.

Errors reach the reader as the built-in exceptions of ``dataplane.upstream.client``, translated here, the one
place llhttp's exceptions enter:

- ``ConnectionError``: the connection closed before the answer ended;
- ``TimeoutError``: no answer, or no body bytes, in time;
- ``ValueError``: a malformed answer (the connection is closed, never reused).

Used only by ``UpstreamClient``, which owns the pool.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

import httptools

from dataplane.outbox import Outbox
from dataplane.upstream.alarms import Alarms

_MAX_HEAD = 64 * 1024  # status line and headers of an answer (interim ones included), and its trailers
_MAX_FRAMING = 64 * 1024  # bytes received in a row without a body byte
_HIGH_WATER = 256 * 1024  # buffered body bytes before the socket stops being read
_DRAIN_S = 1.0  # how long an abandoned body's end may take for its connection to be reused
_MAX_DRAIN = 64 * 1024
_VERSIONS = ("1.1", "1.0")


class Connection(asyncio.Protocol):
    """One socket; parses one answer at a time into ``status``, ``headers`` and decoded body pieces.

    Also the llhttp parser's callback object (``on_message_begin`` … ``on_message_complete``): they run inside
    ``data_received`` and raise ``ValueError`` to refuse an answer.
    """

    def __init__(self, alarms: Alarms, outbox: Outbox) -> None:
        self._alarms = alarms
        self._loop = alarms.loop
        self._outbox = outbox
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.busy = False  # a request is outstanding: bytes may arrive
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._paused = False
        self._drain: tuple[Callable[[], None], asyncio.TimerHandle] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.body_done = False
        self.keep_alive = True
        self._body: list[bytes] = []
        self._body_len = 0
        self._until_close = False  # the body ends when the upstream closes the connection
        self._head_bytes = 0
        self._framing_bytes = 0  # received since the last body byte
        self._fields: dict[str, str] = {}  # the headers of the (possibly interim) answer being parsed

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if not self.busy or parser is None:
            # Bytes nobody asked for (e.g. a 408 before closing an idle connection): never reuse it.
            self.close()
            return
        body_before = self._body_len
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # one of our callbacks refused the answer
            context = exc.__context__
            self._refuse(context if isinstance(context, ValueError) else ValueError(str(exc)))
            return
        except httptools.HttpParserUpgrade:
            self._refuse(ValueError("unexpected protocol switch"))
            return
        except httptools.HttpParserError as exc:  # llhttp's message names the rule, never quotes the bytes
            self._refuse(ValueError(f"malformed answer: {exc}"))
            return
        if self._body_len != body_before:
            self._framing_bytes = 0
        else:
            self._framing_bytes += len(data)
            if self._framing_bytes > _MAX_FRAMING:
                self._refuse(ValueError("response head too large" if not self.head_done
                                        else "too many bytes without a body byte"))
                return
        if self._drain is not None:
            self._drained()
            return
        if self._body_len > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.busy and self.head_done and self._until_close:
            self.body_done = True
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.keep_alive = False
        self._parser = None  # it holds this protocol's callbacks: no cycle outlives the socket
        if self._drain is not None:
            self._drain[1].cancel()
            self._drain = None
        if self.busy and self.head_done and self._until_close and exc is None:
            self.body_done = True
        if self.busy and not self.body_done:
            self._fail(ConnectionError("the upstream closed the connection before the answer ended"))
        self._wake()

    # -- llhttp's callbacks (all in data_received, so a reader finds whole answers ready without waiting)

    def on_message_begin(self) -> None:
        if self.head_done:  # llhttp starts the next answer on a keep-alive connection
            raise ValueError("bytes after the end of the answer")
        self._fields = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > _MAX_HEAD:
            raise ValueError("response trailers too large" if self.head_done else "response head too large")
        if self.head_done:
            return  # a trailer: counted, not kept
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").rstrip(" \t")  # llhttp strips the leading whitespace only
        fields = self._fields
        fields[key] = f"{fields[key]}, {text}" if key in fields else text

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # only called from data_received's feed
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise ValueError("unexpected protocol switch")
            if status < 100:
                raise ValueError("malformed status line")
            return  # an interim answer (100 Continue, 103 Early Hints…): llhttp ends it, the real one follows
        if parser.get_http_version() not in _VERSIONS:
            raise ValueError("unsupported HTTP version")
        fields = self._fields
        encoding = fields.get("content-encoding")
        if encoding is not None and encoding.lower() != "identity":
            raise ValueError(f"unsupported content-encoding {encoding[:40]!r}")
        te = fields.get("transfer-encoding")
        if te is not None and te.lower() != "chunked":
            raise ValueError(f"unsupported transfer-encoding {te[:40]!r}")
        self.status, self.headers, self.head_done = status, fields, True
        self.keep_alive = parser.should_keep_alive()  # version and Connection; false for a close-delimited body
        self._until_close = te is None and "content-length" not in fields and status not in (204, 304)
        self._head_bytes = 0  # trailers get their own allowance

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:  # not the end of an interim answer
            self.body_done = True

    # -- waiting

    def _refuse(self, exc: ValueError) -> None:
        self._fail(exc)
        self._wake()
        self.close()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _raise_failure(self) -> None:
        # (A method, not a test inline: after ``await``, mypy would still take ``self._error`` for the None it was
        # tested to be before, and so would its compiled form, which checks the type it reads.)
        error = self._error
        if error is not None:
            raise error

    async def _wait(self, deadline: float) -> None:
        self._raise_failure()
        timeout = deadline - self._loop.time()
        if timeout <= 0:
            raise TimeoutError("the upstream did not answer in time")
        waiter = self._waiter = self._loop.create_future()
        alarm = self._alarms.at(deadline, self._expire)
        try:
            await waiter
        finally:
            alarm.cancel()
            self._waiter = None
        self._raise_failure()

    def _expire(self) -> None:
        # (Only while ``_wait`` waits: it cancels the alarm before it returns.)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError("the upstream did not answer in time"))

    async def wait_head(self, deadline: float) -> None:
        while not self.head_done:
            await self._wait(deadline)

    async def read_some(self, read_timeout_s: float, deadline: float | None = None) -> bytes:
        """Body bytes available now (waiting for some), b"" once the body ended."""
        while not self._body:
            if self.body_done:
                return b""
            wait_until = self._loop.time() + read_timeout_s
            await self._wait(wait_until if deadline is None else min(deadline, wait_until))
        body = self._body
        data = body[0] if len(body) == 1 else b"".join(body)
        self._body = []
        self._body_len = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    # -- draining: the reader stopped early ([DONE] came before the body's end); reuse the connection if the
    # rest of the body arrives soon, without anyone waiting for it.

    def drain(self, then: Callable[[], None]) -> None:
        self._body, self._body_len = [], 0
        self._drain = (then, self._loop.call_later(_DRAIN_S, self.close))
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _drained(self) -> None:
        assert self._drain is not None
        self._body = []  # discarded; _body_len keeps counting what was drained
        if not self.body_done and self._body_len <= _MAX_DRAIN:
            return
        then, timer = self._drain
        self._drain = None
        timer.cancel()
        self.busy = False
        if self.body_done:
            then()
        else:
            self.close()

    # -- lifecycle

    def send(self, data: bytes) -> None:
        """Send a request (while the loop is busy, on its next turn with the others of this one: ``Outbox``)."""
        if self.transport is None or not self.open:
            raise ConnectionError("the upstream connection is closed")
        self._reset()
        if self._parser is None:
            # One parser per connection: llhttp starts over after each answer read to its end, and a connection
            # carries another request only then (one ended by close or a refused answer is never reused).
            self._parser = httptools.HttpResponseParser(self)
        self._error = None
        self.busy = True
        if self._paused:  # an earlier answer filled the buffer and was released unread
            self._paused = False
            self.transport.resume_reading()
        self._outbox.write(self.transport, data)

    def finished(self) -> None:
        self.busy = False

    def close(self) -> None:
        self.open = False
        self.keep_alive = False
        if self._drain is not None:
            self._drain[1].cancel()
            self._drain = None
        if self.transport is not None:
            self.transport.close()
