"""The discovery stream's server end, and the registry of data planes it feeds (the admin API's StatusSource).

State of the world, after Envoy's xDS: a data plane opens ``StreamSnapshots`` saying which version it runs;
whenever the latest snapshot of its region differs from the last one sent (initially: from what it runs), the
server sends it. ACK: a request echoing the newest response's nonce with the new version. NACK: the same nonce
with the old version and an error. Versions the data plane never saw are skipped (the publisher coalesces).
A request marked ``heartbeat`` is neither: it only refreshes the data plane's last-seen time and health, even
when it echoes the current nonce (it does, by design) or carries no error after a NACK.
Every request carries the data plane's deployment health (``controlplane.push.fleet_health``).

Liveness: a data plane sends a heartbeat every interval it announces in its first request (5 s if it announces
none). When ``missed_heartbeats`` intervals in a row pass without any message from it (3 by default: shown
disconnected between 3 and 4 intervals after its last message, 15-20 s with the defaults), the stream is dead: its
record is marked disconnected at once, keeping the time of that last message as ``last_seen``, and the stream
ends with UNAVAILABLE, so its task and buffers go even though no FIN or RST ever came (a lost host, a partition,
a frozen process). A data plane that is alive reconnects and is shown connected again. Silence is counted in
whole intervals, not measured from the last message, so a control plane whose event loop stalled counts the stall
as one interval, never as all of them; a heartbeat less than two intervals late never ends a stream. The server's
gRPC keepalive (``tollway.grpc_options``) is the backstop for a stream stuck sending.

Authentication: ``authorization: Bearer <data-plane token>`` in the call metadata, compared in constant time;
otherwise the call ends UNAUTHENTICATED before anything is sent. This module is the one place where discovery
outcomes become gRPC statuses.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import grpc

from controlplane.grpc_auth import bearer, require_token
from controlplane.push.fleet_health import DeploymentState, health_json, providers_summary, states_of
from controlplane.push.publisher import Publisher
from tollway.grpc_options import HEARTBEAT_INTERVAL_S
from tollway.pb import discovery_pb2 as dpb
from tollway.pb import discovery_pb2_grpc as dgrpc
from tollway.pb import snapshot_pb2 as spb

log = logging.getLogger(__name__)


Status = Literal["ACK", "NACK", "PENDING"]

MIN_HEARTBEAT_S = 0.1  # no stream is watched more often than this, whatever its data plane announces


def heartbeat_interval(announced: float) -> float:
    """The interval a stream's silence is counted in: the one its data plane announced (floored at
    ``MIN_HEARTBEAT_S``), or the data planes' default ``HEARTBEAT_INTERVAL_S`` when it announced none (0) or
    nonsense."""
    if not (announced > 0 and math.isfinite(announced)):
        return HEARTBEAT_INTERVAL_S
    return max(announced, MIN_HEARTBEAT_S)


@dataclass(frozen=True)
class DataPlaneRecord:
    """What the control plane knows about one data plane; replaced whole on every change."""

    node_id: str
    region: str
    version: str  # the version it runs ("" for none)
    status: Status
    error: str  # the last NACK's error; "" after an ACK
    last_seen: float  # unix seconds of its last message (heartbeats keep it fresh), or of its stream's close
    connected: bool
    stream: int  # which stream wrote this record: a stale stream's disconnect must not mark a live one
    health: tuple[DeploymentState, ...] = ()  # its deployments, as its last message reported them


class Registry:
    """Per data plane status plus the published snapshots: implements the admin API's ``StatusSource``.

    Task-safe on one event loop; written only by the discovery servicer.
    """

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._records: dict[str, DataPlaneRecord] = {}
        # Other replicas' records (``controlplane.ha.shared`` replaces it whole): shown, never written here.
        self.remote: tuple[DataPlaneRecord, ...] = ()

    def local(self) -> list[DataPlaneRecord]:
        """The records of data planes that streamed to this replica."""
        return list(self._records.values())

    def _merged(self) -> list[DataPlaneRecord]:
        """One record per data plane across the replicas: a connected one first, then the newest."""
        best: dict[str, DataPlaneRecord] = {}
        for r in (*self.remote, *self._records.values()):
            held = best.get(r.node_id)
            if held is None or (r.connected, r.last_seen) > (held.connected, held.last_seen):
                best[r.node_id] = r
        return list(best.values())

    def record(self, node_id: str) -> DataPlaneRecord | None:
        return self._records.get(node_id)

    def put(self, record: DataPlaneRecord) -> None:
        self._records[record.node_id] = record

    def forget_before(self, last_seen: float) -> None:
        """Drop the records of data planes disconnected and not seen since ``last_seen`` (unix seconds)."""
        for r in [r for r in self._records.values() if not r.connected and r.last_seen < last_seen]:
            del self._records[r.node_id]

    def disconnect(self, node_id: str, stream: int, *, silent: bool = False) -> None:
        """``stream`` ended: its record, unless a newer stream owns it or it is disconnected already, is
        disconnected as of now, or as of its last message (its ``last_seen``) when the stream went ``silent``."""
        current = self._records.get(node_id)
        if current is not None and current.stream == stream and current.connected:
            self._records[node_id] = replace(current, connected=False,
                                             last_seen=current.last_seen if silent else time.time())

    def dataplanes(self) -> list[dict[str, Any]]:
        return [
            {
                "nodeId": r.node_id,
                "region": r.region,
                "version": r.version,
                "status": r.status,
                "error": r.error,
                "lastSeen": _iso(r.last_seen),
                "connected": r.connected,
                "health": health_json(r.health),
            }
            for r in sorted(self._merged(), key=lambda r: (r.region, r.node_id))
        ]

    def providers(self) -> list[dict[str, Any]]:
        """Per provider and deployment: the worst state among connected data planes, and each one's view."""
        return providers_summary(self._merged())

    def snapshots(self) -> list[dict[str, Any]]:
        out = []
        for region in self._publisher.regions():
            s = self._publisher.snapshot(region)
            if s is None:
                continue
            out.append({
                "region": region, "version": s.version, "tenants": len(s.tenants), "keys": len(s.keys),
                "deployments": len(s.deployments), "routes": len(s.routes),
            })
        return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


Context = grpc.aio.ServicerContext[dpb.DiscoveryRequest, dpb.DiscoveryResponse]


class DiscoveryServicer:
    """Serves ``StreamSnapshots``; one coroutine per connected data plane."""

    def __init__(self, publisher: Publisher, registry: Registry, token: str, *, missed_heartbeats: int = 3) -> None:
        self._publisher = publisher
        self._registry = registry
        self._expected = bearer(token)
        self._missed_heartbeats = missed_heartbeats
        self._streams = itertools.count(1)
        self._nonces = itertools.count(1)

    def add_to(self, server: grpc.aio.Server) -> None:
        dgrpc.add_DiscoveryServicer_to_server(self, server)

    async def StreamSnapshots(  # the name the generated code registers
        self, request_iterator: AsyncIterator[dpb.DiscoveryRequest], context: Context
    ) -> AsyncIterator[dpb.DiscoveryResponse]:
        await require_token(context, self._expected)
        try:
            hello = await anext(request_iterator)
        except StopAsyncIteration:
            return
        if not hello.node_id or not hello.region:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must name node_id and region")
        stream = _Stream(self._publisher, self._registry, hello, next(self._streams))
        log.info("data plane %s (region %s) connected running %r", hello.node_id, hello.region, hello.version or "none")
        reader = asyncio.create_task(stream.read(request_iterator), name=f"discovery-read-{hello.node_id}")
        watch = asyncio.create_task(stream.watch(self._missed_heartbeats), name=f"discovery-watch-{hello.node_id}")
        try:
            while True:
                snapshot = await stream.next_snapshot({reader, watch})
                if snapshot is None:
                    break
                nonce = str(next(self._nonces))
                stream.sent(snapshot.version, nonce)
                yield dpb.DiscoveryResponse(nonce=nonce, snapshot=snapshot)
            if watch.done() and not reader.done():
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"nothing received for {self._missed_heartbeats} "
                                    f"heartbeat intervals of {stream.interval:g} s: the stream is ended")
        finally:
            # Before any await: gRPC cancels this coroutine when the peer's cancel reaches it, which can be after the
            # reader saw the stream end, while this block awaits; a disconnect after the await would then never run
            # and the data plane would stay connected for good.
            reader.cancel()
            watch.cancel()
            self._registry.disconnect(hello.node_id, stream.id)
            log.info("data plane %s disconnected", hello.node_id)
            await asyncio.gather(reader, watch, return_exceptions=True)


class _Stream:
    """One data plane's stream: what was sent, and the registry record its requests update."""

    def __init__(self, publisher: Publisher, registry: Registry, hello: dpb.DiscoveryRequest, stream: int) -> None:
        self.id = stream
        self._publisher = publisher
        self._registry = registry
        self._node = hello.node_id
        self._region = hello.region
        self._last_sent = hello.version  # the data plane runs this, so it needs nothing until the region differs
        self._nonce = ""
        self.interval = heartbeat_interval(hello.heartbeat_interval_s)
        self._heard = 0  # messages read after the hello: ``watch`` compares counts, not clocks
        running = publisher.version_for(hello.region, hello.node_id)  # a staged rollout may assign it another
        status: Status = "ACK" if publisher.is_ready and hello.version == running else "PENDING"
        self._registry.put(DataPlaneRecord(
            node_id=hello.node_id, region=hello.region, version=hello.version, status=status, error=hello.error,
            last_seen=time.time(), connected=True, stream=stream, health=states_of(hello),
        ))

    def _differs(self) -> bool:
        version = self._publisher.version_for(self._region, self._node) if self._publisher.is_ready else ""
        return version != "" and version != self._last_sent

    async def next_snapshot(self, ending: set[asyncio.Task[None]]) -> spb.Snapshot | None:
        """The region's latest snapshot once it differs from the last one sent; None once one of ``ending`` is
        done (the reader: the data plane closed its side or the call broke; the watch: it went silent)."""
        if not self._differs():
            waiter = asyncio.create_task(self._wait_until_differs())
            try:
                await asyncio.wait({waiter, *ending}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        if any(t.done() for t in ending):
            return None
        return self._publisher.snapshot_for(self._region, self._node)  # never None once it differs

    async def _wait_until_differs(self) -> None:
        async with self._publisher.changed:
            await self._publisher.changed.wait_for(self._differs)

    def sent(self, version: str, nonce: str) -> None:
        self._last_sent, self._nonce = version, nonce
        current = self._registry.record(self._node)
        if current is not None and current.stream == self.id:
            self._registry.put(replace(current, status="PENDING"))

    async def watch(self, missed_heartbeats: int) -> None:
        """Return once ``missed_heartbeats`` intervals in a row passed without a message, having marked the record
        disconnected (at once, even while the stream is stuck sending a snapshot)."""
        missed, heard = 0, self._heard
        while missed < missed_heartbeats:
            await asyncio.sleep(self.interval)
            missed, heard = (missed + 1, heard) if self._heard == heard else (0, self._heard)
        self._registry.disconnect(self._node, self.id, silent=True)
        log.warning("data plane %s sent nothing for %d heartbeat intervals of %g s: ending its stream",
                    self._node, missed_heartbeats, self.interval)

    async def read(self, requests: AsyncIterator[dpb.DiscoveryRequest]) -> None:
        async for request in requests:
            self._heard += 1
            current = self._registry.record(self._node)
            if current is None or current.stream != self.id or not current.connected:
                continue  # a newer stream from the same node owns the record, or this one was found silent
            if request.heartbeat:
                self._registry.put(replace(current, health=states_of(request), last_seen=time.time()))
                continue
            status, error = current.status, current.error
            if request.response_nonce and request.response_nonce == self._nonce:
                status, error = ("NACK", request.error) if request.error else ("ACK", "")
                if request.error:
                    log.warning("data plane %s rejected %s: %s", self._node, self._last_sent, request.error)
            self._registry.put(replace(current, version=request.version, status=status, error=error,
                                       last_seen=time.time(), health=states_of(request)))
