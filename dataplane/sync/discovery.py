"""The discovery stream's data-plane end: receive snapshots, install them, persist them, ACK or NACK.

One long-running coroutine (``DiscoveryClient.run``) keeps one stream open to the control plane, reconnecting
with jittered exponential backoff (capped at five seconds). For every snapshot received:

- ``SnapshotHolder.prepare`` validates it whole on a worker thread, and ``adopt`` swaps it in on the loop (or it
  is refused and the old one kept);
- on success it is written to disk (``SnapshotCache``), then ACKed (the request echoes its version and nonce);
- on refusal it is NACKed (the request echoes the version still running, the nonce and the reason).

Between answers, every ``heartbeat_interval_s`` it sends a heartbeat on the same stream: the version and nonce
of its last answer again, marked ``heartbeat`` so the control plane never reads it as a new ACK or NACK. The
first request announces the interval: the control plane ends a stream that stays silent for several of them
(UNAVAILABLE), and this loop reconnects as after any other failure. Every
request (hello, ACK, NACK, heartbeat) carries the deployments' current health, which is how the control plane
learns it (``gatectl providers``). Writes to the stream are serialized by a lock: gRPC allows one at a time.

gRPC errors are translated here, at the boundary, into a log line and ``last_error``; nothing escapes ``run``
but cancellation. The control plane being away never affects serving: the holder keeps what it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.disk_cache import SnapshotCache
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.sync.channel import control_plane_channel
from dataplane.sync.health_report import HealthSummary
from tollway.backoff import Backoff
from tollway.pb import discovery_pb2 as dpb
from tollway.pb import discovery_pb2_grpc as dgrpc

log = logging.getLogger(__name__)



class DiscoveryClient:
    """Owned by ``DataPlane``, which runs ``run`` as a background task and cancels it on stop.

    ``connected`` and ``last_error`` are for status reporting; only ``run`` writes them.
    """

    def __init__(
        self,
        settings: DataPlaneSettings,
        holder: SnapshotHolder,
        cache: SnapshotCache,
        *,
        backoff: Backoff | None = None,
        health: HealthSummary | None = None,
    ) -> None:
        self._settings = settings
        self._holder = holder
        self._cache = cache
        self._backoff = backoff or Backoff()
        self._health = health
        self._answered = ("", "")  # (version, nonce) of the last request that was not a heartbeat
        self.connected = False
        self.last_error = ""

    def load_persisted(self) -> bool:
        """Install the snapshot persisted by an earlier run, if there is a valid one; True if it was installed."""
        snapshot = self._cache.load(self._settings.region)
        if snapshot is None:
            return False
        error = self._holder.install(snapshot)
        if error is not None:
            log.warning("ignoring the persisted snapshot %s: %s", snapshot.version, error)
            return False
        log.info("serving persisted snapshot %s until the control plane answers", snapshot.version)
        return True

    async def run(self) -> None:
        """Stream until cancelled, reconnecting after every failure."""
        attempt = 0
        while True:
            try:
                received = await self._stream_once()
                self.last_error = "control plane closed the stream"
            except grpc.aio.AioRpcError as exc:
                received = False
                self.last_error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # top of a long-running loop: log, remember, retry
                received = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("discovery stream failed")
            self.connected = False
            attempt = 0 if received else attempt + 1
            delay = self._backoff.delay(attempt)
            log.warning("discovery stream to %s: %s; retrying in %.1fs",
                        self._settings.control_plane, self.last_error, delay)
            await asyncio.sleep(delay)

    async def _stream_once(self) -> bool:
        """One stream, until it ends; True if at least one snapshot arrived (the connection was healthy)."""
        s = self._settings
        received = False
        metadata = (("authorization", f"Bearer {s.control_plane_token}"),) if s.control_plane_token else ()
        async with control_plane_channel(s) as channel:
            call = dgrpc.DiscoveryStub(channel).StreamSnapshots(metadata=metadata)
            writes = asyncio.Lock()

            async def send(request: dpb.DiscoveryRequest) -> None:
                request.health.extend(self._health() if self._health is not None else ())
                async with writes:
                    await call.write(request)
                if not request.heartbeat:
                    self._answered = (request.version, request.response_nonce)

            heartbeats: asyncio.Task[None] | None = None
            try:
                await send(dpb.DiscoveryRequest(node_id=s.node_id, region=s.region, version=self._holder.version,
                                                heartbeat_interval_s=s.heartbeat_interval_s))
                heartbeats = asyncio.create_task(self._heartbeats(send), name=f"discovery-heartbeat-{s.node_id}")
                async for response in call:
                    self.connected, received, self.last_error = True, True, ""
                    await send(await self._handle(response))
                return received
            finally:
                if heartbeats is not None:
                    heartbeats.cancel()
                    await asyncio.gather(heartbeats, return_exceptions=True)
                call.cancel()

    async def _heartbeats(self, send: Callable[[dpb.DiscoveryRequest], Awaitable[None]]) -> None:
        """Repeat the last answer as a heartbeat until the stream ends (its reader notices and reconnects)."""
        s = self._settings
        while True:
            await asyncio.sleep(s.heartbeat_interval_s)
            version, nonce = self._answered
            try:
                await send(dpb.DiscoveryRequest(node_id=s.node_id, region=s.region, version=version,
                                                response_nonce=nonce, heartbeat=True))
            except (grpc.RpcError, asyncio.InvalidStateError) as exc:
                log.debug("heartbeat not sent, the stream is ending: %s", exc)
                return

    async def _handle(self, response: dpb.DiscoveryResponse) -> dpb.DiscoveryRequest:
        """Install, persist, and answer with the ACK or NACK for ``response``."""
        s, snapshot = self._settings, response.snapshot
        if snapshot.region != s.region:
            error: str | None = f"snapshot is for region {snapshot.region!r}, this data plane serves {s.region!r}"
        else:
            # Building the runtime of a large snapshot takes seconds of CPU: in a worker thread the event loop
            # keeps serving requests meanwhile. The adoption (runtime, limits and budgets together) is one step
            # back on the loop, so no request sees two versions and no companion is mutated off the loop.
            prepared = await asyncio.to_thread(self._holder.prepare, snapshot)
            if isinstance(prepared, str):
                error = prepared
            else:
                self._holder.adopt(prepared)
                error = None
        if error is not None:
            log.error("rejected snapshot %s: %s; still serving %r", snapshot.version, error, self._holder.version)
            return dpb.DiscoveryRequest(node_id=s.node_id, region=s.region, version=self._holder.version,
                                        response_nonce=response.nonce, error=error)
        log.info("installed snapshot %s", snapshot.version)
        try:
            await asyncio.to_thread(self._cache.save, snapshot)
        except OSError as exc:
            # Serving is unaffected; only a restart without the control plane would miss this version.
            log.error("could not persist snapshot %s: %s", snapshot.version, exc)
        return dpb.DiscoveryRequest(node_id=s.node_id, region=s.region, version=snapshot.version,
                                    response_nonce=response.nonce)
