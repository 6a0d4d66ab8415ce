"""The connection edge: what a client connection may cost the data plane before a request reaches a route.

aiohttp's server bounds header lines and counts, and (since 3.14) closes a connection idle for the keep-alive
timeout; it has no deadline for a request's head, no bound on its total size, no minimum body rate, no per-client
connection limit, and answers protocol errors in plain text that quotes what it could not parse. ``EdgeHandler``,
aiohttp's connection protocol with those limits added, closes each gap where the bytes arrive:

- the head (request line and headers) must be complete within ``header_timeout_s`` of its first byte (408) and
  within ``max_header_bytes`` (431), counted as the bytes arrive, before aiohttp buffers them;
- ambiguous framing is refused (400, connection closed): a ``Transfer-Encoding`` other than exactly ``chunked``,
  a request line that is not ``METHOD SP target SP HTTP/1.x``;
- at most ``max_connections_per_client`` connections per client address (0: no limit), beyond which a new
  connection is answered 429 and closed;
- protocol errors are answered in the API's format (Anthropic's for ``/v1/messages``, else OpenAI's) with a fixed
  message: no header value or raw request byte is echoed;
- an inference request read whole (``whole_request``) past the overload manager's limit is refused
  503 ``overloaded`` as it arrives, before aiohttp builds a request; one within it is served here (``FastPath``),
  streams too; one whose head came alone (as the official SDKs send) is gathered until its body is in, for at
  most ``body_timeout_s``, then judged the same way (past that, aiohttp's parser takes it);
- ``request_body.read_body`` (the request path's one way to read a body on aiohttp's path) needs
  the body at ``min_body_bytes_per_s`` after a grace of ``body_timeout_s`` (408), and turns broken chunked
  framing into a 400.

``dataplane.api.connection.edge_runner`` makes the server whose connections these are.

Each trigger is counted in ``EdgeEvents`` (``tollway_edge_events_total`` on ``/metrics``); refusals are queued as
aiohttp's own error messages, so its request loop answers them and closes the connection the usual way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from dataplane.api.connection.overload import Overload
from dataplane.api.connection.whole_request import (
    REQUEST_LINE,
    SENT,
    FastHandler,
    FastPath,
    FastRequest,
    framed,
    serialized,
)
from dataplane.errors import error_body as openai_error_body
from dataplane.record.metrics import EdgeEvent
from dataplane.settings import DataPlaneSettings
from dataplane.translate.anthropic_to_hub import anthropic_error

log = logging.getLogger(__name__)

LINGER_S = 2.0  # how long a refused connection is read (and discarded) after its answer, before it is closed


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout_s: float = 20.0
    max_header_bytes: int = 60 * 1024
    max_connections_per_client: int = 0
    body_timeout_s: float = 10.0
    min_body_bytes_per_s: int = 16 * 1024
    keepalive_timeout_s: float = 60.0  # aiohttp's: idle between requests, or before the first
    max_body_bytes: int = 4 * 1024 * 1024  # the request path's limit (``DataPlaneSettings.max_body_bytes``)


@dataclass(frozen=True, slots=True)
class Edge:
    """The edge limits and the counts of what they refused, shared by the server and the request path."""

    limits: EdgeLimits
    events: EdgeEvents
    overload: Overload
    fast: bool = True  # serve whole, non-streamed inference requests here (``FastPath``)

    @classmethod
    def of(cls, s: DataPlaneSettings) -> Edge:
        return cls(EdgeLimits(s.header_timeout_s, s.max_header_bytes, s.max_connections_per_client,
                              s.body_timeout_s, s.min_body_bytes_per_s, s.keepalive_timeout_s, s.max_body_bytes),
                   EdgeEvents(),
                   Overload(s.max_in_flight, s.overload_lag_s),
                   s.fast_path and not s.cors_origins)  # (CORS answers are the middleware's)


class EdgeEvents:
    """What the edge refused, by event; read at scrape time. Owned by the event loop (no lock)."""

    def __init__(self) -> None:
        self.counts: Counter[EdgeEvent] = Counter()
        self.connections: Counter[str] = Counter()  # open connections per client address


class EdgeRefusal(HttpProcessingError):
    """A refusal of the edge, answered by ``EdgeHandler.handle_error`` in the API's format."""

    def __init__(self, status: int, error_type: str, code: str, message: str) -> None:
        super().__init__(code=status, message=message)
        self.error_type = error_type
        self.error_code = code


def error_body(path: str, status: int, error_type: str, code: str, message: str) -> bytes:
    """An error in the format of the API ``path`` belongs to (the dialects' own envelopes)."""
    if path.startswith("/v1/messages"):
        return anthropic_error(status, message)
    return openai_error_body(message, error_type, code)


def _protocol_error(exc: BaseException | None, status: int) -> EdgeRefusal:
    """A fixed description of a protocol error (never the parser's message, which quotes the input)."""
    if isinstance(exc, EdgeRefusal):
        return exc
    if isinstance(exc, LineTooLong):
        return EdgeRefusal(431, "invalid_request_error", "headers_too_large", "a request header line is too long")
    if isinstance(exc, HttpProcessingError) and getattr(exc, "message", "").startswith("Too many headers"):
        return EdgeRefusal(431, "invalid_request_error", "headers_too_large", "the request has too many headers")
    if status == 500:
        return EdgeRefusal(500, "server_error", "internal_error", "the gateway failed to handle the request")
    return EdgeRefusal(400, "invalid_request_error", "malformed_request", "the request is not valid HTTP/1.1")


class EdgeHandler(web_protocol.RequestHandler):
    """aiohttp's connection protocol plus the edge limits (see the module docstring)."""

    def __init__(self, manager: web.Server, *, limits: EdgeLimits, events: EdgeEvents, overload: Overload,
                 shed_answers: Mapping[bytes, bytes], fast: FastPath | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._shed_answers = shed_answers  # by inference route
        self._events = events
        self._overload = overload
        self._head = bytearray()  # the bytes of the head being received (up to the limit)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None  # the payload of the last parsed request, until it is complete
        self._refused = False
        self._pending = False  # a request let through by the overload manager, not yet claimed by the request path
        self._fast = fast
        self._serving_fast = False  # a request of the fast path is being served
        self._held = bytearray()  # what arrived meanwhile
        self._gathering = bytearray()  # a fast-path request whose head came first: until its body is in
        self._gathered = 0  # the length it will have (0: none is being gathered)
        self._gather_timer: asyncio.TimerHandle | None = None
        self._client = ""
        self._path = ""  # of the last request line received (an error's format follows its API)

    # --- connections -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._client:
            return
        self._events.connections[self._client] += 1
        limit = self._limits.max_connections_per_client
        if limit and self._events.connections[self._client] > limit:
            self._refuse("client_connection_limit", EdgeRefusal(
                429, "rate_limit_error", "too_many_connections",
                f"this client has more than {limit} connections open to the gateway"))

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._stop_gathering()
        self.claim()
        if self._client:
            left = self._events.connections[self._client] - 1
            if left > 0:
                self._events.connections[self._client] = left
            else:
                del self._events.connections[self._client]
            self._client = ""
        super().connection_lost(exc)

    # --- the request head ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._serving_fast:  # a pipelined request: read once the answer before it is out, in order
            self._held += data
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if self._gathered:
            gathered = self._gather(data)
            if gathered is None:
                return
            data = gathered
        in_head = self._body is None or self._body.is_eof()
        if in_head and not self._head and not self._request_in_progress and not self._messages \
                and data.startswith(b"POST /v1/") and self._admit(data):
            return
        self._parse(data, in_head)

    def _parse(self, data: bytes, in_head: bool) -> None:
        """aiohttp's parsing of ``data``, with the head's limits."""
        if in_head:
            if not self._head and self._head_timer is None:
                self._head_timer = self._loop.call_later(self._limits.header_timeout_s, self._head_timed_out)
            room = self._limits.max_header_bytes + 1 - len(self._head)
            if room > 0:
                self._head += data[:room]
        before = self._request_count
        super().data_received(data)
        parsed = self._request_count - before
        if parsed:
            self._heads_parsed(parsed)
        elif in_head and len(self._head) > self._limits.max_header_bytes:
            self._refuse("headers_too_large", EdgeRefusal(
                431, "invalid_request_error", "headers_too_large",
                f"the request headers exceed {self._limits.max_header_bytes} bytes"))

    def _admit(self, data: bytes) -> bool:
        """The overload manager's decision on the request ``data`` holds whole (head and ``Content-Length`` body,
        nothing after it) if it is a POST to an inference route: refused here (True: answered), or let through
        with its place held (``pending``) until the request path claims it (True when the fast path serves it).
        Such a request whose head came alone is gathered until its body is in (True). False for anything else,
        which the request path judges alone."""
        overload = self._overload
        if self._pending:  # the last request let through never reached the request path (a 404, an error)
            self._pending = False
            overload.pending -= 1
        parts = framed(data, self._shed_answers)
        if parts is None or self.transport is None:
            return False
        whole, length = parts
        if length != len(data):
            fast = self._fast
            if fast is not None and whole.head_end <= fast.max_header_bytes \
                    and len(data) < length <= whole.head_end + 4 + fast.max_body_bytes:
                # The head came first (an SDK's client): gather the body (bounded by the body timeout).
                self._gathering += data
                self._gathered = length
                self._gather_timer = self._loop.call_later(self._limits.body_timeout_s, self._gather_timed_out)
                return True
            return False
        if overload.count + overload.pending >= overload.limit:
            overload.shed += 1
            self._write(self._shed_answers[whole.path])
            return True
        # Held from now: the request path counts it only once its task runs, a loop iteration later, and every
        # request read meanwhile would see the same free place.
        self._pending = True
        overload.hold()
        fast = self._fast
        if fast is None:
            return False
        handler = fast.routes.get(whole.path)
        request = FastRequest.of(data, whole, fast, self) if handler is not None else None
        if request is None or handler is None:
            return False
        self._serving_fast = True
        self._loop.create_task(self._serve_fast(handler, request))
        return True

    def _gather(self, data: bytes) -> bytes | None:
        """Add ``data`` to the request being gathered: None while its body is still arriving (or once the fast
        path took it whole), else the bytes to parse as if they had just arrived (more than one request)."""
        self._gathering += data
        if len(self._gathering) < self._gathered:
            return None
        gathered = bytes(self._gathering)
        exact = len(gathered) == self._gathered
        self._stop_gathering()
        if exact and self._admit(gathered):
            return None
        return gathered

    def _gather_timed_out(self) -> None:
        """The body is slow: aiohttp's parser and the request path's body rate (``read_body``) judge it."""
        self._gather_timer = None
        if self._gathered and not self._refused:
            gathered = bytes(self._gathering)
            self._stop_gathering()
            self._parse(gathered, True)

    def _stop_gathering(self) -> None:
        self._gathering.clear()
        self._gathered = 0
        if self._gather_timer is not None:
            self._gather_timer.cancel()
            self._gather_timer = None

    def _write(self, data: bytes) -> None:
        """Write ``data`` now, after whatever the fast path's outbox still holds for this connection."""
        transport = self.transport
        assert transport is not None
        if self._fast is not None:
            self._fast.outbox.flush(transport)
        transport.write(data)

    def claim(self) -> None:
        """The request path took the request let through (``count`` holds its place now), or it is gone."""
        if self._pending:
            self._pending = False
            self._overload.pending -= 1

    async def _serve_fast(self, handler: FastHandler, request: FastRequest) -> None:
        """Serve a request of the fast path: its route's handler, the answer written as it is, the connection
        kept alive (aiohttp's idle timer told), then what the client sent meanwhile."""
        close = False
        # The idle timer must not fire while the request is served (aiohttp counts only its own requests).
        self._next_keepalive_close_time = float("inf")
        try:
            answer = await handler(request)
            if answer is SENT:  # written by the request path (``send_answer``, ``FastStream``)
                out = b""
            elif not isinstance(answer, web.Response) or not isinstance(answer.body, bytes | bytearray):
                raise TypeError(f"the fast path cannot send a {type(answer).__name__}")
            else:
                out = serialized(answer)
                close = answer.keep_alive is False  # force_close()d (None: aiohttp would keep the connection)
        except Exception as exc:  # the handler failed: as aiohttp's server would, a 500 and the connection closed
            log.error("error handling a request", exc_info=exc)
            # (A stream begun is cut: its client sees the body end early.)
            out = b"" if request.streamed else raw_answer(request.path, _protocol_error(exc, 500))
            close = True
        finally:
            self.claim()
            self._serving_fast = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if out:
            request.outbox.write(transport, out)
        if close:
            request.outbox.flush(transport)  # the answer leaves before the connection closes
            self.force_close()
            return
        self._keepalive = True
        self._next_keepalive_close_time = self._loop.time() + self._limits.keepalive_timeout_s
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time, self._process_keepalive)
        if self._held:
            held, self._held = bytes(self._held), bytearray()
            transport.resume_reading()
            self.data_received(held)

    def _heads_parsed(self, count: int) -> None:
        head, self._head = bytes(self._head), bytearray()
        self._cancel_head_timer()
        self._path = _path_of(head)
        if head and head.find(b"\r\n\r\n", 0, self._limits.max_header_bytes + 1) < 0:
            # A whole head arrived in one read: the first one's end must lie within the limit.
            self._refuse("headers_too_large", EdgeRefusal(
                431, "invalid_request_error", "headers_too_large",
                f"the request headers exceed {self._limits.max_header_bytes} bytes"), replace=True)
            return
        new = list(self._messages)[-count:] if count <= len(self._messages) else []
        for msg, payload in new:
            if not isinstance(msg, RawRequestMessage):
                continue  # aiohttp's own parse error, answered by ``handle_error``
            te = msg.headers.get("Transfer-Encoding")
            if te is not None and te.strip().lower() != "chunked":
                self._refuse("malformed_request", EdgeRefusal(
                    400, "invalid_request_error", "malformed_request",
                    "Transfer-Encoding must be exactly 'chunked'"), replace=True)
                return
            self._body = payload
        if head and REQUEST_LINE.match(head) is None:
            self._refuse("malformed_request", EdgeRefusal(
                400, "invalid_request_error", "malformed_request", "the request line is not valid HTTP/1.1"),
                replace=True)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head and not self._refused:
            self._refuse("header_timeout", EdgeRefusal(
                408, "invalid_request_error", "request_timeout",
                f"the request headers were not received within {self._limits.header_timeout_s:g} s"))

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, event: EdgeEvent, refusal: EdgeRefusal, *, replace: bool = False) -> None:
        """Answer ``refusal`` and read nothing more from the connection. ``replace``: requests were just parsed
        (their framing is not trusted): the refusal takes their place in aiohttp's queue, which answers it and
        closes. Otherwise (no request parsed: a head too slow or too big, a connection too many) it is written
        here, the sending side shut, and the connection closed ``LINGER_S`` later or when the client closes, so
        a client still sending reads the answer rather than a reset."""
        self._refused = True
        self._cancel_head_timer()
        self._events.counts[event] += 1
        transport = self.transport
        if replace or transport is None or self._request_in_progress:
            if replace:
                self._messages.clear()
            self._messages.append((web_protocol._ErrInfo(status=refusal.code, exc=refusal,
                                                         message=refusal.message), EMPTY_PAYLOAD))
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        self._write(raw_answer(_path_of(bytes(self._head)) or self._path, refusal))
        if transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(LINGER_S, transport.close)
        # aiohttp's request loop, waiting for a request, stops (as at its own keep-alive timeout).
        self._force_close = True
        if self._waiter is not None:
            self._waiter.cancel()

    # --- errors --------------------------------------------------------------------------------------------

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        refusal = _protocol_error(exc, status)
        if refusal.code == 500:
            log.error("error handling a request", exc_info=exc)
        elif not isinstance(exc, EdgeRefusal):
            self._events.counts["malformed_request"] += 1
        if request.writer.output_size > 0:  # part of an answer is out: the connection is all that can go
            raise ConnectionError("an answer was already being sent")
        path = _path_of(bytes(self._head)) or self._path
        resp = web.Response(status=refusal.code, content_type="application/json",
                            body=error_body(path, refusal.code, refusal.error_type, refusal.error_code,
                                            refusal.message))
        resp.force_close()
        return resp


def _path_of(head: bytes) -> str:
    """The path of a request line, as far as it arrived ("" before it)."""
    first = head.split(b" ", 2)
    return first[1].decode("latin-1") if len(first) > 1 else ""


def raw_answer(path: str, refusal: EdgeRefusal, headers: str = "Connection: close\r\n") -> bytes:
    """A refusal as the bytes to write, in the API's format of ``path``."""
    body = error_body(path, refusal.code, refusal.error_type, refusal.error_code, refusal.message)
    return (f"HTTP/1.1 {refusal.code} {HTTPStatus(refusal.code).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{headers}\r\n").encode() + body
