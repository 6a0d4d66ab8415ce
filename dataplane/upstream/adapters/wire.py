"""What every HTTP adapter shares: one POST over the lean ``UpstreamClient``, failure translation, SSE reading.

``post`` sends the request and waits for the answer's head; an error status becomes the adapter's
``UpstreamFailure`` (its ``status_failure`` reads the first bytes of the error body). The client's exceptions
become ``UpstreamFailure`` at one boundary, ``map_failures``, around every call into the client:
``TimeoutError`` → ``timeout``, ``ValueError`` → ``protocol``, ``OSError`` → ``connect``.

``SseBatches`` reads a streamed answer's ``data:`` events, grouped as they arrived: a class, compiled with the
request path (``dataplane.compiled``), where an async generator would run interpreted. What the translating
adapters layer on top of it is ``event_stream``'s (async generators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dataplane.errors import FailureKind, UpstreamFailure
from dataplane.snapshot.runtime import Provider
from dataplane.upstream.adapters.reply import LastBatch
from dataplane.upstream.client import Response, UpstreamClient
from dataplane.upstream.sse import SseParser

MAX_ERROR_BODY = 64 * 1024
# A non-streamed answer larger than this is refused (a protocol failure: failover, charged nothing): no chat,
# embeddings or Responses answer comes near it, and buffering more would let one upstream exhaust memory.
MAX_ANSWER_BYTES = 32 * 1024 * 1024

StatusFailure = Callable[[int, bytes, Provider], UpstreamFailure]


def check_credential(provider: Provider) -> None:
    """Raise ``auth`` when the provider's credential is missing here or cannot travel in a header."""
    if provider.credential_env and provider.credential is None:
        raise UpstreamFailure("auth", f"provider {provider.name!r} has no credential on this data plane "
                                      f"(environment variable {provider.credential_env} is not set)")
    if provider.credential and not provider.credential.isprintable():
        raise UpstreamFailure("auth", f"provider {provider.name!r} has a credential that cannot be sent in a "
                                      f"header (environment variable {provider.credential_env})")


def header_lines(headers: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items())


def map_failures(provider: Provider, resp: Response | None = None, *, mid_answer: bool | None = None) -> FailureMap:
    """The one place the upstream client's exceptions become ``UpstreamFailure`` (like httpx's
    ``map_httpcore_exceptions``). With ``resp`` (an answer whose head arrived), a failure is one mid-answer and
    the connection is closed on any exception, so a half-read answer never returns to the pool; without it the
    caller owns closing, and ``mid_answer`` says whether the head had arrived."""
    return FailureMap(provider, resp, resp is not None if mid_answer is None else mid_answer)


class FailureMap:
    """``map_failures``' ``with`` block. A class, not a ``@contextmanager`` generator: it wraps every upstream
    call of the request path (two a request), and a generator's setup and exit cost a microsecond each time."""

    __slots__ = ("_mid_answer", "_provider", "_resp")

    def __init__(self, provider: Provider, resp: Response | None, mid_answer: bool) -> None:
        self._provider, self._resp, self._mid_answer = provider, resp, mid_answer

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, UpstreamFailure):
            return
        if self._resp is not None:
            self._resp.close()
        if isinstance(exc, OSError | TimeoutError | ValueError):
            raise translate(exc, self._provider, mid_answer=self._mid_answer) from None


def translate(exc: BaseException, provider: Provider, mid_answer: bool = False) -> UpstreamFailure:
    kind: FailureKind
    if isinstance(exc, TimeoutError):
        kind, what = "timeout", "timed out"
    elif isinstance(exc, ValueError):
        kind, what = "protocol", "sent a malformed answer"
    elif mid_answer:
        # A connection lost mid-body: for failover purposes, the same as one that never answered.
        kind, what = "connect", "closed the connection mid-answer"
    else:
        kind, what = "connect", f"could not be reached ({type(exc).__name__})"
    return UpstreamFailure(kind, f"provider {provider.name!r} {what}")


async def post(client: UpstreamClient, provider: Provider, url: str, headers: str, body: bytes, timeout_s: float,
               status_failure: StatusFailure) -> tuple[Response, float]:
    """The 2xx answer whose head arrived, and the deadline (``loop.time()``) for reading a whole body."""
    now = client.time()
    deadline = now + timeout_s
    with map_failures(provider):
        resp = await client.post(url, headers, body, connect_timeout_s=provider.connect_timeout_s,
                                 read_timeout_s=provider.read_timeout_s,
                                 deadline=min(deadline, now + provider.read_timeout_s))
    if resp.status >= 400 or resp.status < 200:
        with map_failures(provider, resp):
            error = await resp.read(MAX_ERROR_BODY, deadline)
        resp.release()
        raise status_failure(resp.status, error, provider)
    return resp, deadline


async def read_whole(resp: Response, provider: Provider, deadline: float) -> bytes:
    with map_failures(provider, resp):
        body = await resp.read(limit=MAX_ANSWER_BYTES + 1, deadline=deadline)
    if len(body) > MAX_ANSWER_BYTES:  # read() closed the connection at the limit
        raise UpstreamFailure("protocol", f"provider {provider.name!r} sent an answer larger than "
                                          f"{MAX_ANSWER_BYTES} bytes")
    resp.release()
    return body


class SseBatches:
    """The payloads of a streamed answer's ``data:`` events until ``[DONE]`` (or the body's end), grouped as they
    arrived (``Batches``); the group holding the end is a ``LastBatch``.

    ``ends`` tells, for protocols with their own end marker, whether a group holds the last event. An upstream
    silent for longer than the provider's read timeout between two reads is cut (``timeout``), one that dies
    mid-stream raises ``connect``, both from ``__anext__``. The answer goes back to the pool once read to its end
    (at ``[DONE]`` the body's end may still be on its way: ``Response.release`` waits for it); a stream that
    fails, or is closed (``aclose``) before its end, closes the connection, which would carry unread events.
    """

    __slots__ = ("_ends", "_open", "_parser", "_provider", "_resp")

    def __init__(self, resp: Response, provider: Provider, ends: Callable[[list[bytes]], bool] | None = None) -> None:
        self._resp = resp
        self._provider = provider
        self._ends = ends
        self._parser = SseParser()
        self._open = True  # the answer neither released nor closed yet

    def __aiter__(self) -> SseBatches:
        return self

    async def __anext__(self) -> list[bytes]:
        if not self._open:
            raise StopAsyncIteration
        parser = self._parser
        try:
            with map_failures(self._provider, mid_answer=True):
                while True:
                    data = await self._resp.read_some()
                    if not data:
                        # An upstream that ends without [DONE] is tolerated here; adapters whose protocol has its
                        # own end marker (Anthropic's message_stop) check for it.
                        last = parser.finish()
                        self._settle()
                        if last is None:
                            raise StopAsyncIteration
                        return [last]
                    payloads = parser.feed(data)
                    if self._ends is not None and payloads and self._ends(payloads):
                        parser.done = True
                    if parser.done:
                        self._settle()
                        return LastBatch(payloads)
                    if payloads:
                        return payloads
        except BaseException:  # a failure, or the task cancelled mid-read: the connection is not reusable
            self._settle()
            raise

    async def aclose(self) -> None:
        self._settle()

    def _settle(self) -> None:
        if self._open:
            self._open = False
            if self._parser.done or self._resp.body_done:
                self._resp.release()
            else:
                self._resp.close()
