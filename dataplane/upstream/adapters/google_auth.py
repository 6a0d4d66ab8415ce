"""OAuth 2.0 access tokens for Vertex AI, from google-auth credentials, fetched and refreshed off the request path.

A ``vertex`` provider's credentials are a service-account key file whose path is in the environment variable the
provider names (``credential_env``: ``provider.credential`` is that path), loaded with
``google.oauth2.service_account.Credentials.from_service_account_file``, or, when it names none, Application
Default Credentials (``google.auth.default``: ``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, the
metadata server of GCE/GKE/Cloud Run), always with the ``cloud-platform`` scope.

``AccessTokens`` caches one token per provider (name, variable and path: a new snapshot pointing elsewhere starts
over) in the adapter instance that owns it: the adapter's only mutable state. google-auth's transports block (the
token endpoint, the metadata server, reading the key file), so loading and refreshing run in a thread
(``asyncio.to_thread``), on the ``requests`` transport when it is importable, else on urllib3's. A token is
refreshed ahead of its expiry, ``REFRESH_BEFORE_S`` before it (half its lifetime for short-lived ones), by a
background task the first request past that point starts; requests meanwhile keep the current token. A request
waits only when there is no valid token at all (the first one, or one that expired while the provider was idle),
and then all waiting requests share one refresh. A failure is an ``auth`` ``UpstreamFailure`` naming the provider
and the environment variable (never the key file's contents, the path or a token), remembered for
``MISS_RETRY_S`` so an outage of the token endpoint does not become one thread per request.

google-auth's transports log each HTTP request at DEBUG (once the ``google`` logger is configured) with its
parsed body and headers in the record's ``extra``; it hashes access and refresh tokens there, but not the
service account's signed JWT (``assertion``, which buys access tokens for an hour) nor an ``Authorization``
header. ``_RedactRequestFilter`` replaces those on the transports' loggers, so a data plane logging ``google`` at
DEBUG with a formatter that prints ``extra`` (JSON logs, google's own structured logging) logs no credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Provider

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_BEFORE_S = 5 * 60.0
MISS_RETRY_S = 5.0
_DEFAULT_LIFETIME_S = 3600.0  # credentials that report no expiry: Google's usual token lifetime
_EXPIRY_MARGIN_S = 30.0  # a token this close to its expiry is not sent (it could expire in flight)

Key = tuple[str, str, str]
REDACTED = "[redacted]"
# The loggers of the transports ``_transport`` may pick: a logger's filters see only its own records.
_TRANSPORT_LOGGERS = ("google.auth.transport.requests", "google.auth.transport.urllib3")
_SECRET_BODY_FIELDS = frozenset({"assertion", "subject_token", "actor_token"})  # grants that are credentials
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-goog-api-key"})


class _RedactRequestFilter(logging.Filter):
    """Replaces the credentials in google-auth's DEBUG record of an HTTP request (``record.httpRequest``, its
    ``extra``): the body's grant assertions and the credential headers. Keeps every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "httpRequest", None)
        if isinstance(request, dict):
            redacted = dict(request)
            body, headers = request.get("body"), request.get("headers")
            if isinstance(body, Mapping):
                redacted["body"] = {k: REDACTED if k in _SECRET_BODY_FIELDS else v for k, v in body.items()}
            if isinstance(headers, Mapping):  # a dict, or requests' case-insensitive one
                redacted["headers"] = {k: REDACTED if str(k).lower() in _SECRET_HEADERS else v
                                       for k, v in headers.items()}
            record.httpRequest = redacted
        return True


def _quiet_request_logs() -> None:
    for name in _TRANSPORT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactRequestFilter) for f in logger.filters):
            logger.addFilter(_RedactRequestFilter())


@dataclass(slots=True)
class _Entry:
    credentials: Any = None  # google-auth credentials, once loaded
    transport: Any = None  # google-auth's Request for this entry (one refresh at a time uses it)
    token: str = ""
    valid_until: float = 0.0  # clock seconds
    refresh_at: float = 0.0
    task: asyncio.Task[None] | None = None
    error: str = ""
    retry_at: float = 0.0


def _transport() -> Any:
    try:
        from google.auth.transport.requests import Request
    except ImportError:  # requests is optional for google-auth: urllib3 comes with botocore
        import urllib3
        from google.auth.transport.urllib3 import Request as Urllib3Request

        return Urllib3Request(urllib3.PoolManager())  # type: ignore[no-untyped-call]
    return Request()


def _load(provider: Provider) -> Any:
    """Blocking: the provider's credentials (not yet holding a token)."""
    scopes = [CLOUD_PLATFORM_SCOPE]
    if provider.credential_env:
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            provider.credential, scopes=scopes)
    import google.auth

    credentials, _project = google.auth.default(scopes=scopes)
    return credentials


def _refresh(entry: _Entry, provider: Provider) -> tuple[str, float]:
    """Blocking (run in a thread): load the credentials if needed, fetch a token; the token and its lifetime."""
    if entry.credentials is None:
        entry.credentials = _load(provider)
    if entry.transport is None:
        entry.transport = _transport()
    entry.credentials.refresh(entry.transport)
    token = entry.credentials.token
    if not isinstance(token, str) or not token:
        raise ValueError("the credentials produced no access token")
    expiry = entry.credentials.expiry  # naive UTC, as google-auth keeps it
    if not isinstance(expiry, datetime.datetime):
        return token, _DEFAULT_LIFETIME_S
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return token, max(0.0, (expiry - now).total_seconds())


def _why(exc: BaseException) -> str:
    """What went wrong, without anything secret: google-auth's own messages (the token endpoint's error, a missing
    ADC) name no key material; any other exception only by its type."""
    from google.auth import exceptions

    if isinstance(exc, exceptions.RefreshError | exceptions.DefaultCredentialsError) and exc.args:
        first = exc.args[0]
        return (first if isinstance(first, str) else type(exc).__name__)[:300]
    return type(exc).__name__


def _where(provider: Provider) -> str:
    if provider.credential_env:
        return f"the service account key file named by environment variable {provider.credential_env}"
    return "Application Default Credentials"


class AccessTokens:
    """Vertex access tokens per provider; one per adapter, used on one event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        _quiet_request_logs()

    @staticmethod
    def _key(provider: Provider) -> Key:
        return provider.name, provider.credential_env, provider.credential or ""

    async def get(self, provider: Provider) -> str:
        """A valid access token for ``provider``; waits only when there is none."""
        entry = self._entries.setdefault(self._key(provider), _Entry())
        now = self._clock()
        if entry.token and now < entry.valid_until:
            if now >= entry.refresh_at and entry.task is None and now >= entry.retry_at:
                entry.task = asyncio.create_task(self._run(entry, provider))  # ahead of expiry, in the background
            return entry.token
        if entry.task is None:
            if entry.error and now < entry.retry_at:
                raise self._failure(provider, entry.error)
            entry.task = asyncio.create_task(self._run(entry, provider))
        # Shielded: a request that gives up (its timeout) does not cancel the refresh others wait for.
        await asyncio.shield(entry.task)
        if entry.token and self._clock() < entry.valid_until:
            return entry.token
        raise self._failure(provider, entry.error or "no token")

    def invalidate(self, provider: Provider, token: str) -> None:
        """Forget ``token`` (Google refused it): the next ``get`` fetches another."""
        entry = self._entries.get(self._key(provider))
        if entry is not None and entry.token == token:
            entry.token, entry.valid_until = "", 0.0

    def secrets(self) -> tuple[str, ...]:
        """The tokens held, for scrubbing upstream messages."""
        return tuple(e.token for e in self._entries.values() if e.token)

    async def aclose(self) -> None:
        """Cancel refreshes in flight (a thread already running finishes on its own)."""
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, entry: _Entry, provider: Provider) -> None:
        try:
            token, lifetime = await asyncio.to_thread(_refresh, entry, provider)
        except Exception as exc:  # every failure is the provider's auth failure, never the request path's crash
            entry.error = _why(exc)
            entry.retry_at = self._clock() + MISS_RETRY_S
        else:
            now = self._clock()
            entry.token, entry.error = token, ""
            entry.valid_until = now + lifetime - min(_EXPIRY_MARGIN_S, lifetime / 10)
            entry.refresh_at = now + lifetime - min(REFRESH_BEFORE_S, lifetime / 2)
            entry.retry_at = 0.0
        finally:
            entry.task = None

    @staticmethod
    def _failure(provider: Provider, why: str) -> UpstreamFailure:
        return UpstreamFailure("auth", f"provider {provider.name!r} could not get a Google access token from "
                                       f"{_where(provider)}: {why}")
