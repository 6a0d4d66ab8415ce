"""Active health checks: a periodic lightweight probe per provider, reported to ``Health``.

Each round probes every provider that a tenant may use from this data plane once (concurrently):
``GET {base}/models`` for OpenAI-compatible upstreams, ``GET {base}/openai/models?api-version=…`` for Azure,
``GET {base}/v1/models`` for Anthropic, ``GET {base}/v1beta/models`` for Gemini, ``GET {base}/`` for Bedrock and
Vertex (signed APIs: an unsigned request's 403 proves the endpoint is up), each with the provider's credential.
Reachable and answering below 500
is healthy (a 401 or 404 still proves the upstream is up; a credential missing here is found when the snapshot
installs, ``dataplane.upstream.credentials``); refused, reset, timed out or 5xx is down, with what the probe
found as the reason (never the URL). The mock provider is always healthy and never probed.

The probe speaks just enough HTTP/1.1 (``Connection: close``, status line only) over a fresh connection, so
it never takes a pooled request connection away and needs no client library. ``HealthChecker`` is a task
owned by the data plane (``start``/``stop``); a failing round is logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from urllib.parse import quote

from dataplane.core.health import Health
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.snapshot.runtime import Provider
from dataplane.upstream.client import parse_target
from tollway.tasks import cancel

log = logging.getLogger(__name__)


def probe_request(provider: Provider) -> tuple[str, dict[str, str]]:
    """The URL and headers of ``provider``'s probe."""
    headers: dict[str, str] = {}
    credential = provider.credential
    if provider.type == "azure":
        url = f"{provider.base_url}/openai/models?api-version={quote(provider.api_version, safe='')}"
        if credential:
            headers["api-key"] = credential
    elif provider.type == "gemini":
        url = f"{provider.base_url}/v1beta/models"
        if credential:
            headers["x-goog-api-key"] = credential
    elif provider.type in ("bedrock", "vertex"):
        # Signed or token-authenticated APIs: any answer below 500 (an unsigned request's 403 included) proves
        # the endpoint is up; credentials are the passive side's concern, as for the others.
        url = f"{provider.base_url}/"
    elif provider.type == "anthropic":
        url = f"{provider.base_url}/v1/models"
        headers["anthropic-version"] = "2023-06-01"
        if credential:
            headers["x-api-key"] = credential
    else:
        url = f"{provider.base_url}/models"
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
    return url, headers


async def probe(url: str, headers: dict[str, str], timeout_s: float,
                tls: ssl.SSLContext | None = None) -> int:
    """The status of ``GET url``; raises ``OSError``/``TimeoutError``/``ValueError`` when there is none."""
    target = parse_target(url)
    scheme, host, port = target.origin
    lines = [f"GET {target.path} HTTP/1.1", f"Host: {target.host_header}", "Connection: close",
             "User-Agent: tollway-health", *(f"{k}: {v}" for k, v in headers.items() if v.isprintable())]
    async with asyncio.timeout(timeout_s):
        context = (tls or ssl.create_default_context()) if scheme == "https" else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status_line = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("not an HTTP answer")
    return int(parts[1])


async def probe_problem(provider: Provider, timeout_s: float) -> str:
    """"" when ``provider`` answers its probe below 500, else what the probe found (no URL, no credential)."""
    if provider.type == "mock":
        return ""
    url, headers = probe_request(provider)
    limit = min(timeout_s, provider.connect_timeout_s + 1.0)
    try:
        status = await probe(url, headers, limit)
    except TimeoutError:
        return f"active check: no answer within {limit:g}s"
    except ConnectionRefusedError:
        return "active check: connection refused"
    except OSError as exc:
        return f"active check: {exc.strerror or type(exc).__name__}"
    except ValueError:
        return "active check: the answer is not HTTP"
    return f"active check: HTTP {status}" if status >= 500 else ""


class HealthChecker:
    """Probes every provider of the current snapshot every ``interval_s`` seconds. Not restartable."""

    def __init__(self, holder: SnapshotHolder, health: Health, interval_s: float = 10.0,
                 timeout_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._holder = holder
        self._health = health
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.errors = 0

    def start(self) -> None:
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="health-checker")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def check_once(self) -> None:
        runtime = self._holder.runtime
        if runtime is None:
            return
        # Only providers some tenant may use from here: one outside every tenant's regions gets no byte, probes
        # included (residency is about data, but "never contacted" is the simpler promise to check).
        providers = {c.deployment.provider.name: c.deployment.provider
                     for candidates in runtime.tenant_candidates.values() for c in candidates}
        names = list(providers)
        results = await asyncio.gather(*(probe_problem(providers[n], self._timeout_s) for n in names))
        now = self._clock()
        for name, problem in zip(names, results, strict=True):
            self._health.provider_checked(name, not problem, now, problem)
        self.rounds += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # the top of a long-running loop: log, count, keep checking
                self.errors += 1
                log.exception("health check round failed")
            await asyncio.sleep(self.interval_s)
