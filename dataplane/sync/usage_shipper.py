"""Ships the usage spool to the control plane over ``Usage.Report`` and applies its acknowledgements.

One background task (``start``/``stop``) keeps a stream open while there is something to ship. It sends the
spool's batches in sequence order from the ack watermark, keeps at most ``window`` of them unacknowledged, and
on each ``UsageAck`` advances the spool's watermark, which deletes what the control plane has stored. When the
stream breaks it reconnects after a jittered exponential delay and resends from the watermark: the control
plane drops batches it already stored, so resending never double counts.

An append wakes the task (``UsageSpool.subscribe``); after a short ``linger`` that lets a burst share one batch,
the records are on their way, so a record leaves within about a second of being appended. Spool I/O (reads,
fsync) runs in one dedicated worker thread so the event loop never waits for the disk.

gRPC errors are translated here, at the boundary, into a log line and ``last_error``; nothing escapes the task
but cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

from dataplane.gil import finer_gil_switching
from dataplane.record.spool import UsageSpool
from dataplane.sync.channel import REOPEN_AFTER_FAILURES, grpc_target
from tollway.grpc_options import CLIENT_OPTIONS
from tollway.pb import usage_pb2 as upb

log = logging.getLogger(__name__)

T = TypeVar("T")

Report = grpc.aio.StreamStreamMultiCallable[bytes, upb.UsageAck]
_SERVICE = upb.DESCRIPTOR.services_by_name["Usage"]
REPORT_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Report'].name}"  # as the generated stub calls it


def _report(channel: grpc.aio.Channel) -> Report:
    """``Usage.Report`` taking batches as the spool writes them (``Batch.wire``: a serialized ``UsageBatch``),
    sent as they are: the records are never parsed nor serialized again on their way out."""
    return channel.stream_stream(REPORT_METHOD, request_serializer=bytes,
                                 response_deserializer=upb.UsageAck.FromString)


class UsageShipper:
    """Owned by the data plane's process wiring: ``start()`` inside the running loop, ``await stop()`` at exit.

    The spool stays the caller's: the shipper neither opens nor closes it. ``connected`` (the control plane
    acknowledged on the current stream), ``last_error`` and ``backlog`` are for status and metrics; only the
    shipper's task writes the first two.
    """

    def __init__(
        self,
        spool: UsageSpool,
        target: str,
        token: str | None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
        max_records: int = 2000,
        window: int = 4,
        linger: float = 0.25,
        poll_interval: float = 1.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self._spool = spool
        self._target = target
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._credentials = credentials
        self._options = options or CLIENT_OPTIONS  # ``channel.channel_options``: the TLS server name, if any
        self._max_records = max_records
        self._window = window
        self._linger = linger
        self._poll = poll_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()  # set on every acknowledgement, for ``drained``
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.connected = False
        self.last_error = ""

    @property
    def backlog(self) -> int:
        """Records in the spool not yet acknowledged by the control plane."""
        return self._spool.backlog

    def start(self) -> None:
        if self._task is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-spool")
        self._unsubscribe = self._spool.subscribe(self._wake.set)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-shipper")

    async def drained(self) -> None:
        """Return once everything appended so far is acknowledged; bound it with ``asyncio.timeout``."""
        while self._spool.backlog > 0:
            self._acked.clear()
            await self._acked.wait()

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop shipping; with ``drain_timeout``, first give the backlog that long to be acknowledged."""
        if self._task is None:
            return
        if drain_timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.drained()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._executor is not None:
            # Waits for at most the one spool operation in flight, so the spool is quiet when we return.
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None
        self.connected = False

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        # Reading a batch decodes up to ``max_records`` records on the spool's thread: GIL-holding work, under a
        # fine switch interval so the loop never waits long for the GIL meanwhile (``dataplane.gil``).
        return await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                functools.partial(_finely, fn, *args))

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is not None:
            return grpc.aio.secure_channel(grpc_target(self._target), self._credentials, options=self._options)
        return grpc.aio.insecure_channel(grpc_target(self._target), options=self._options)

    async def _run(self) -> None:
        channel = self._channel()
        report = _report(channel)
        failures = 0
        try:
            while True:
                await self._wait_for_backlog()
                progressed = False
                try:
                    progressed = await self._session(report)
                except grpc.aio.AioRpcError as e:
                    self.last_error = f"{e.code().name}: {e.details()}"
                    level = logging.ERROR if e.code() == grpc.StatusCode.UNAUTHENTICATED else logging.WARNING
                    log.log(level, "usage stream to %s failed: %s", self._target, self.last_error)
                except Exception as e:  # the top of a long-running loop: log, back off, go on
                    self.last_error = f"{type(e).__name__}: {e}"
                    log.exception("usage shipper failed")
                self.connected = False
                failures = 0 if progressed else failures + 1
                if failures and failures % REOPEN_AFTER_FAILURES == 0:  # the addresses may have moved
                    await channel.close(None)
                    channel = self._channel()
                    report = _report(channel)
                await asyncio.sleep(self._delay(failures))
        finally:
            self.connected = False
            await channel.close(None)

    def _delay(self, failures: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * 2 ** min(failures, 30))
        return float(ceiling) * random.uniform(0.5, 1.0)

    async def _wait_for_backlog(self) -> None:
        while self._spool.backlog == 0:
            self._wake.clear()
            if self._spool.backlog > 0:
                break
            await self._sleep_until_woken()

    async def _sleep_until_woken(self) -> None:
        try:
            async with asyncio.timeout(self._poll):
                await self._wake.wait()
        except TimeoutError:
            return
        await asyncio.sleep(self._linger)

    async def _session(self, report: Report) -> bool:
        """One stream: send from the watermark, apply acks. True if anything was acknowledged."""
        call = report(None, metadata=self._metadata)  # (requests written with ``call.write``)
        session = _Session(self._spool.acked)
        sender = asyncio.create_task(self._send(call, session), name="usage-send")
        receiver = asyncio.create_task(self._receive(call, session), name="usage-receive")
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver not in done and isinstance(sender.exception(), asyncio.InvalidStateError):
                await receiver  # writing to a finished call: the receiver raises how it finished
            for task in (receiver, sender):
                if task in done:
                    task.result()  # raises the failure that ended the session
            return session.progressed
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            call.cancel()

    async def _send(self, call: Any, session: _Session) -> None:
        while True:
            while session.sent - session.acked >= self._window:
                session.acks.clear()
                await session.acks.wait()
            self._wake.clear()
            batch = await self._io(self._spool.next_batch, session.sent, self._max_records)
            if batch is None:
                await self._sleep_until_woken()
                continue
            await call.write(batch.wire)
            session.sent = batch.sequence
            if batch.records < self._max_records:
                # Under steady load records keep arriving: let them gather instead of cutting (and fsyncing)
                # a small batch per loop, which costs the request path's core.
                await asyncio.sleep(self._linger)

    async def _receive(self, call: Any, session: _Session) -> None:
        ack: upb.UsageAck
        async for ack in call:
            if ack.epoch != self._spool.epoch or ack.sequence > session.sent:
                log.warning("ignoring an ack for a batch never sent: %s/%d", ack.epoch, ack.sequence)
                continue
            self.connected = True
            if ack.sequence > session.acked:
                await self._io(self._spool.ack, ack.epoch, ack.sequence)
                session.acked = ack.sequence
                session.progressed = True
                self.last_error = ""
                session.acks.set()
                self._acked.set()


class _Session:
    """Progress of one stream, shared by its sender and receiver tasks (one event loop, no lock needed)."""

    def __init__(self, acked: int) -> None:
        self.sent = acked  # the highest sequence written on this stream (starts at the watermark)
        self.acked = acked
        self.progressed = False
        self.acks = asyncio.Event()


def _finely(fn: Callable[..., T], *args: Any) -> T:
    with finer_gil_switching():
        return fn(*args)
