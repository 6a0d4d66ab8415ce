"""AWS credentials for the Bedrock adapter: botocore's chain per (profile, region), resolved and refreshed off
the event loop, frozen for the signer (``dataplane.upstream.adapters.bedrock``). The Google counterpart is
``google_auth``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dataplane.errors import UpstreamFailure
from dataplane.snapshot.runtime import Provider

REFRESH_BEFORE_S = 5 * 60  # temporary credentials are refreshed when they expire sooner than this
MISS_RETRY_S = 5.0  # how long "no credentials here" is believed before the chain is asked again


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """One frozen set of AWS credentials, as botocore's signer reads them; never shown by ``repr``."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        """What an upstream message must never carry back to a client (the key id names the AWS account)."""
        return tuple(s for s in (self.secret_key, self.token, self.access_key) if s)


@dataclass(slots=True)
class _Entry:
    source: Any  # botocore's Credentials (RefreshableCredentials refresh themselves); None: none were found
    frozen: AwsCredentials | None
    retry_at: float = 0.0  # for a miss: time.monotonic() before which the chain is not asked again
    problem: str = ""  # for a miss: why (the client's 502 says it)


def _load(profile: str, region: str, source: Any) -> _Entry:
    """Blocking (run in a thread): resolve the chain (``source`` None) or refresh ``source``, then freeze it."""
    if source is None:
        from botocore.session import Session  # type: ignore[import-untyped]

        session = Session(profile=profile or None)
        if region:
            session.set_config_variable("region", region)  # regional STS endpoints for assumed roles
        source = session.get_credentials()
    frozen = source.get_frozen_credentials() if source is not None else None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        return _Entry(None, None, time.monotonic() + MISS_RETRY_S)
    return _Entry(source, AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None))


class CredentialCache:
    """AWS credentials per (profile, region), resolved and refreshed off the event loop; one per adapter.

    The fast path (cached and not about to expire) never leaves the loop; resolutions and refreshes are one at a
    time, so a burst of requests at expiry makes one refresh, not one per request."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = asyncio.Lock()

    async def get(self, provider: Provider) -> AwsCredentials:
        key = (provider.aws_profile, provider.aws_region)
        entry = self._entries.get(key)
        if entry is None or self._stale(entry):
            async with self._lock:
                entry = self._entries.get(key)
                if entry is None or self._stale(entry):
                    entry = self._entries[key] = await self._resolve(provider, entry)
        if entry.frozen is None:
            raise UpstreamFailure("auth", f"provider {provider.name!r}: {entry.problem or _none_found(provider)}")
        return entry.frozen

    @staticmethod
    def _stale(entry: _Entry) -> bool:
        if entry.source is None:
            return time.monotonic() >= entry.retry_at
        refresh_needed = getattr(entry.source, "refresh_needed", None)  # static credentials never expire
        return bool(refresh_needed(REFRESH_BEFORE_S)) if callable(refresh_needed) else False

    @staticmethod
    async def _resolve(provider: Provider, entry: _Entry | None) -> _Entry:
        """The chain's answer; a failure is remembered like a miss (a refresh that failed starts over later)."""
        from botocore.exceptions import BotoCoreError, ProfileNotFound  # type: ignore[import-untyped]

        try:
            return await asyncio.to_thread(_load, provider.aws_profile, provider.aws_region,
                                           entry.source if entry is not None else None)
        except ProfileNotFound:
            problem = f"no AWS credentials on this data plane (profile {provider.aws_profile!r} is not configured)"
        except (BotoCoreError, OSError, ValueError, RuntimeError) as exc:
            # botocore's message may quote a credential process's output: only its type is shown.
            problem = f"the AWS credentials of {where(provider)} could not be loaded ({type(exc).__name__})"
        return _Entry(None, None, time.monotonic() + MISS_RETRY_S, problem)


def where(provider: Provider) -> str:
    return f"profile {provider.aws_profile!r}" if provider.aws_profile else "the default credential chain"


def _none_found(provider: Provider) -> str:
    return (f"no AWS credentials on this data plane ({where(provider)}: environment, shared config and "
            "credentials files, container or instance role)")
