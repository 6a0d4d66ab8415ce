"""What every HTTP adapter shares: one POST over the lean ``UpstreamClient``, failure translation, SSE reading.

``post`` sends the request and waits for the answer's head; an error status becomes the adapter's
``UpstreamFailure`` (its ``status_failure`` reads the first bytes of the error body). The client's exceptions
become ``UpstreamFailure`` at one boundary, ``map_failures``, around every call into the client:
``TimeoutError`` → ``timeout``, ``ValueError`` → ``protocol``, ``OSError`` → ``connect``.

Reading a streamed answer's events is ``event_stream``'s (async generators, which the compiled request path,
``dataplane.compiled``, cannot hold).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from dataplane.errors import FailureKind, UpstreamFailure
from dataplane.snapshot.runtime import Provider
from dataplane.upstream.client import Response, UpstreamClient

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
    now = asyncio.get_running_loop().time()
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
