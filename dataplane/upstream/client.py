"""A lean keep-alive HTTP/1.1 client for upstream calls: one request shape, pooled connections per origin.

The data plane's upstream traffic is always ``POST`` of a small JSON body and a JSON or SSE answer, thousands of
times a second to a handful of origins; a general client (redirects, cookies, multipart, proxies…) costs more
than the rest of the request path together. This one parses the response with llhttp inside the protocol's
``data_received`` (``connection``: Content-Length, chunked, or until close), hands the body to the reader as it
arrives, and puts connections back in a per-origin pool when their answer was read whole and the server keeps
them open.

Errors are built-in exceptions, translated by the adapters: ``ConnectionError`` (refused, reset, closed before
the answer ended), ``TimeoutError`` (connect, read or deadline), ``ValueError`` (a malformed answer).

Never resent: a request goes out on one connection exactly once. A pooled connection is used only if it is
still open when the request is written (a server that closed it while idle is noticed by then and the next or a
new connection is taken); a connection that dies after the request was written fails the request, because the
upstream may have acted on it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

from dataplane.outbox import Outbox
from dataplane.upstream.alarms import Alarms
from dataplane.upstream.connection import Connection

# The request's trace context for the upstream (``traceparent``/``tracestate`` header lines, each ending in CRLF;
# "" for none), set by the attempt (``dataplane.upstream.attempt``) for the request it runs: aiohttp runs each
# request in its own task, so one request's value never reaches another's. Every adapter's POST passes here.
TRACE_HEADERS: ContextVar[str] = ContextVar("tollway_trace_headers", default="")
MAX_IDLE_PER_ORIGIN = 512  # the data plane sizes it to its requests in flight: connections reused, not churned
_MAX_TARGETS = 1024

@dataclass(frozen=True)
class Target:
    """A parsed URL: the pool key and the request line's parts."""

    origin: tuple[str, str, int]  # scheme, host, port
    host_header: str
    path: str


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("upstream URL must be http(s)://host[:port]/path")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path or c in host for c in " \t\r\n"):
        raise ValueError("upstream URL must not contain whitespace")
    return Target((parts.scheme, host, port), host_header, path)


class Response:
    """An answer whose head has arrived. Read the body with ``read``/``read_some``, then ``release`` it."""

    __slots__ = ("_client", "_conn", "_origin", "_read_timeout_s", "headers", "status")

    def __init__(self, client: UpstreamClient, origin: tuple[str, str, int], conn: Connection,
                 read_timeout_s: float) -> None:
        self._client, self._origin, self._conn = client, origin, conn
        self._read_timeout_s = read_timeout_s
        self.status = conn.status
        self.headers = conn.headers  # lower-cased names

    async def read_some(self) -> bytes:
        """The body bytes that arrived so far (waiting up to the read timeout for some); b"" at the end."""
        return await self._conn.read_some(self._read_timeout_s)

    async def read(self, limit: int | None = None, deadline: float | None = None) -> bytes:
        """The body whole, or its first ``limit`` bytes (then the connection is not reused)."""
        parts: list[bytes] = []
        size = 0
        while True:
            chunk = await self._conn.read_some(self._read_timeout_s, deadline)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                self.close()
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return body if limit is None else body[:limit]

    @property
    def body_done(self) -> bool:
        return self._conn.body_done

    def release(self) -> None:
        """Done with this answer: the connection goes back to the pool if it can carry another request."""
        conn = self._conn
        if not (conn.keep_alive and conn.open and conn.head_done):
            conn.finished()
            conn.close()
        elif conn.body_done:
            conn.finished()
            self._client._put(self._origin, conn)
        else:
            conn.drain(lambda: self._client._put(self._origin, conn))

    def close(self) -> None:
        """Abandon the answer and its connection (e.g. the client went away mid-stream)."""
        self._conn.finished()
        self._conn.close()


class UpstreamClient:
    """Pooled keep-alive connections per origin. Task-safe on one event loop; ``close`` once at shutdown."""

    def __init__(self, *, idle_timeout_s: float = 30.0, ssl_context: ssl.SSLContext | None = None,
                 max_idle_per_origin: int = MAX_IDLE_PER_ORIGIN, busy: Callable[[], bool] | None = None,
                 alarms: Alarms | None = None) -> None:
        """``busy``: whether the loop is busy enough to hold the requests' writes to its next turn
        (``dataplane.outbox``; default: always). ``alarms``: the loop's timers (``dataplane.upstream.alarms``;
        default: its own, made on first use)."""
        self._idle_timeout_s = idle_timeout_s
        self._max_idle = max_idle_per_origin
        self._ssl_context = ssl_context
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._outbox = Outbox(busy)  # the requests' writes (``dataplane.outbox``)
        self._alarms = alarms

    def alarms(self) -> Alarms:
        """The timers of the loop it runs on (found once: ``asyncio.get_running_loop()`` makes a ``getpid``
        system call each time)."""
        alarms = self._alarms
        if alarms is None:
            alarms = self._alarms = Alarms(asyncio.get_running_loop())
        return alarms

    def time(self) -> float:
        """The loop's clock (``loop.time()``), which deadlines are measured in."""
        return self.alarms().time()

    def target(self, url: str) -> Target:
        """``url`` parsed, remembered: upstream URLs repeat on every request."""
        found = self._targets.get(url)
        if found is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            found = self._targets[url] = parse_target(url)
        return found

    async def post(self, url: str, headers: str, body: bytes, *, connect_timeout_s: float, read_timeout_s: float,
                   deadline: float) -> Response:
        """Send ``POST url`` and wait for the answer's head (until ``deadline``, a ``loop.time()``).

        ``headers`` are extra header lines, each ending in CRLF (Host, Content-Length and Connection are set
        here, and the request's trace context, ``TRACE_HEADERS``). The caller must ``release`` or ``close`` the
        returned response.
        """
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        target = self.target(url)
        request = (f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n{headers}{TRACE_HEADERS.get()}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        conn = self._take(target.origin)
        if conn is None:
            left = deadline - self.time()
            conn = await self._connect(target.origin, min(connect_timeout_s, left))
        try:
            conn.send(request)
            await conn.wait_head(deadline)
        except BaseException:
            conn.finished()
            conn.close()
            raise
        return Response(self, target.origin, conn, read_timeout_s)

    def _take(self, origin: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the server
            if conn.open and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, origin: tuple[str, str, int], timeout_s: float) -> Connection:
        scheme, host, port = origin
        alarms = self.alarms()
        loop = alarms.loop
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            tls = self._ssl_context
        if timeout_s <= 0:
            raise TimeoutError("no time left to connect to the upstream")
        async with asyncio.timeout(timeout_s):
            _, proto = await loop.create_connection(lambda: Connection(alarms, self._outbox), host, port, ssl=tls,
                                                    server_hostname=host if tls else None)
        return proto

    def _put(self, origin: tuple[str, str, int], conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_idle:
            idle.pop(0).close()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._idle_timeout_s, self._sweep)

    def _sweep(self) -> None:
        # Close connections idle longer than the idle timeout (the oldest are at the front of each list).
        self._sweeper = None
        cutoff = time.monotonic() - self._idle_timeout_s
        for origin in list(self._idle):
            idle = self._idle[origin]
            while idle and (idle[0].idle_since <= cutoff or not idle[0].open):
                idle.pop(0).close()
            if not idle:
                del self._idle[origin]
        if self._idle:
            self._sweeper = asyncio.get_running_loop().call_later(self._idle_timeout_s / 2, self._sweep)

    def idle_connections(self) -> int:
        """How many connections wait in the pool (for tests and metrics)."""
        return sum(len(v) for v in self._idle.values())

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
