"""One upstream HTTP/1.1 connection: an asyncio protocol that parses answers as their bytes arrive.

``Connection`` parses the status line and headers, then the body (Content-Length, chunked, or until close)
inside ``data_received``, so a reader usually finds a whole answer ready without waiting; body bytes queue
until read (the socket stops being read past a high-water mark). Errors reach the reader as the built-in
exceptions of ``dataplane.upstream.client``: ``ConnectionError``, ``TimeoutError``, ``ValueError``. Used only
by ``UpstreamClient``, which owns the pool.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

_MAX_HEAD = 64 * 1024
_HIGH_WATER = 256 * 1024  # buffered body bytes before the socket stops being read
_DRAIN_S = 1.0  # how long an abandoned body's end may take for its connection to be reused
_MAX_DRAIN = 64 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"

# Body framing of an answer.
_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = 0, 1, 2, 3
# Chunked decoder states.
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


class Connection(asyncio.Protocol):
    """One socket; parses one answer at a time into ``status``, ``headers`` and decoded body pieces."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.busy = False  # a request is outstanding: bytes may arrive
        self.idle_since = 0.0
        self._buf = bytearray()
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
        self._framing = _NONE
        self._remaining = 0
        self._chunk_state = _SIZE

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes nobody asked for (e.g. a 408 before closing an idle connection): never reuse it.
            self.close()
            return
        self._buf += data
        try:
            self._parse()
        except ValueError as exc:
            self._fail(exc)
            self._wake()
            self.close()
            return
        if self._drain is not None:
            self._drained()
            return
        if self._body_len > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        if self.busy and self.head_done and self._framing == _UNTIL_CLOSE:
            self.body_done = True
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.keep_alive = False
        if self._drain is not None:
            self._drain[1].cancel()
            self._drain = None
        if self.busy and self.head_done and self._framing == _UNTIL_CLOSE and exc is None:
            self.body_done = True
        if self.busy and not self.body_done:
            self._fail(ConnectionError("the upstream closed the connection before the answer ended"))
        self._wake()

    # -- parsing (all in data_received, so a reader finds whole answers ready without waiting)

    def _parse(self) -> None:
        if not self.head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ValueError("response head too large")
                return
            head = bytes(self._buf[:end])
            del self._buf[: end + 4]
            if self._head(head):  # an interim 1xx answer: the real one follows
                self._parse()
                return
        if self.body_done:
            if self._buf:
                raise ValueError("bytes after the end of the answer")
            return
        if self._framing == _LENGTH:
            take = min(self._remaining, len(self._buf))
            if take:
                self._emit(bytes(self._buf[:take]) if take < len(self._buf) else bytes(self._buf))
                del self._buf[:take]
                self._remaining -= take
            if self._remaining == 0:
                self.body_done = True
                if self._buf:
                    raise ValueError("bytes after the end of the answer")
        elif self._framing == _CHUNKED:
            self._dechunk()
        elif self._framing == _UNTIL_CLOSE and self._buf:
            self._emit(bytes(self._buf))
            self._buf.clear()

    def _head(self, head: bytes) -> bool:
        """Parse a status line and headers; True for an interim (1xx) answer to skip."""
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
            raise ValueError("undecodable response head") from exc
        lines = text.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ValueError("malformed status line")
        status = int(code)
        if 100 <= status < 200:
            if status == 101:
                raise ValueError("unexpected protocol switch")
            return True
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t":
                raise ValueError("malformed header line")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status, self.headers, self.head_done = status, headers, True
        connection = headers.get("connection", "").lower()
        self.keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        encoding = headers.get("content-encoding")
        if encoding is not None and encoding.lower() != "identity":
            raise ValueError(f"unsupported content-encoding {encoding!r}")
        te = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if status in (204, 304):
            self._framing, self.body_done = _NONE, True
        elif te is not None:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise ValueError(f"unsupported transfer-encoding {te!r}")
            self._framing = _CHUNKED
        elif length is not None:
            if not (length.isascii() and length.isdigit()):
                raise ValueError("malformed content-length")
            self._framing, self._remaining = _LENGTH, int(length)
            self.body_done = self._remaining == 0
        else:
            self._framing, self.keep_alive = _UNTIL_CLOSE, False
        return False

    def _dechunk(self) -> None:
        buf = self._buf
        while buf:
            if self._chunk_state == _SIZE:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > 1024:
                        raise ValueError("malformed chunk size")
                    return
                size_text = bytes(buf[:eol]).split(b";", 1)[0].strip(b" \t")
                del buf[: eol + 2]
                if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
                    raise ValueError("malformed chunk size")
                size = int(size_text, 16)
                self._remaining = size
                self._chunk_state = _DATA if size else _TRAILER
            elif self._chunk_state == _DATA:
                take = min(self._remaining, len(buf))
                self._emit(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = _DATA_END
            elif self._chunk_state == _DATA_END:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ValueError("malformed chunk end")
                del buf[:2]
                self._chunk_state = _SIZE
            else:  # trailers, ending with an empty line
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ValueError("trailers too large")
                    return
                del buf[: eol + 2]
                if eol == 0:
                    self.body_done = True
                    if buf:
                        raise ValueError("bytes after the end of the answer")
                    return

    def _emit(self, data: bytes) -> None:
        self._body.append(data)
        self._body_len += len(data)

    # -- waiting

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, deadline: float) -> None:
        if self._error is not None:
            raise self._error
        timeout = deadline - self._loop.time()
        if timeout <= 0:
            raise TimeoutError("the upstream did not answer in time")
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

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
        self._body_len += sum(len(b) for b in self._body)
        self._body = []
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
        if self.transport is None or not self.open:
            raise ConnectionError("the upstream connection is closed")
        self._reset()
        self._error = None
        self.busy = True
        if self._paused:  # an earlier answer filled the buffer and was released unread
            self._paused = False
            self.transport.resume_reading()
        self.transport.write(data)

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


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the upstream did not answer in time"))
