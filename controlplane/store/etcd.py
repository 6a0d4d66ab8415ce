"""The etcd backend: the ``Store`` contract over etcd v3's KV and Watch APIs, through ``aetcd``.

``aetcd.Client`` owns the gRPC channel; requests are built from ``aetcd.rpc`` messages and sent on its stubs
directly, because the contract needs what aetcd's helpers drop: the response header's revision of a
transaction, and a watch stream whose responses carry compaction and cancellation as values. Each response is
split into one batch per revision (etcd may pack several revisions into one response while catching up).

Every aetcd/grpc exception is translated in ``_translated`` (the one boundary)::

    StoreError            etcd refused the request (invalid argument, future revision, ...)
    ├── StoreUnavailable  etcd cannot be reached or timed out, the connection was lost, the store was closed,
    │                     or etcd cancelled a watch (a lost watch: relist and watch again)
    └── Compacted         a watch started below etcd's compaction revision

A transaction that fails with ``StoreUnavailable`` may or may not have been applied (the reply was lost); its
compares make retrying after a fresh read safe.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal, Self

import aetcd
import grpc
import grpc.aio
from aetcd import rpc

from controlplane.store.base import (
    Compacted,
    Compare,
    Event,
    KeyValue,
    Range,
    StoreError,
    StoreUnavailable,
    TxnResult,
    check_txn,
)
from tollway.grpc_targets import static_target

DEFAULT_PORT = 2379
# Pings detect a silently dead peer on a long-lived watch; etcd refuses pings more often than every 5 s.
_CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
}
_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,  # our own channel closing under a pending call
}


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://host[:port][,host[:port]...]`` -> [(host, port)]; IPv6 hosts in brackets."""
    if not url.startswith("etcd://"):
        raise StoreError(f"not an etcd URL: {url!r}")
    endpoints = []
    for part in url.removeprefix("etcd://").rstrip("/").split(","):
        host, colon, port = part.rpartition(":")
        if not colon or host.endswith(":") or (host.startswith("[") and not host.endswith("]")):
            host, port = part, str(DEFAULT_PORT)  # no port given
        if not host or not port.isdigit():
            raise StoreError(f"invalid etcd endpoint {part!r} in {url!r}: use etcd://HOST:PORT")
        endpoints.append((host, int(port)))
    return endpoints


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """The etcd ``[key, range_end)`` holding every key that starts with ``prefix``."""
    key = prefix.encode()
    for i in reversed(range(len(key))):
        if key[i] < 0xFF:
            return key, key[:i] + bytes([key[i] + 1])
    return key or b"\0", b"\0"  # "" or all 0xff: every key from ``key`` on


@contextlib.contextmanager
def _translated(what: str, is_closed: Callable[[], bool] = lambda: False) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except asyncio.CancelledError:
        # grpc reports a call cancelled by our own channel closing as CancelledError; only a cancellation
        # nobody asked this task for is that, and it must not look like the caller's task being cancelled.
        task = asyncio.current_task()
        if is_closed() and task is not None and task.cancelling() == 0:
            raise StoreUnavailable(f"etcd {what}: the store was closed") from None
        raise
    except grpc.aio.AioRpcError as e:
        raise _from_status(what, e.code(), e.details() or "") from e
    except aetcd.exceptions.RevisionCompactedError as e:
        raise Compacted(e.compacted_revision) from e
    except (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError) as e:
        raise StoreUnavailable(f"etcd {what}: {e}") from e
    except aetcd.exceptions.ClientError as e:
        raise StoreError(f"etcd {what}: {e}") from e
    except (grpc.aio.UsageError, OSError, TimeoutError) as e:  # channel closed, socket errors
        raise StoreUnavailable(f"etcd {what}: {e}") from e


def _from_status(what: str, code: grpc.StatusCode, details: str) -> StoreError:
    if code in _UNAVAILABLE:
        return StoreUnavailable(f"etcd {what}: {code.name.lower()}: {details}")
    return StoreError(f"etcd {what}: {code.name.lower()}: {details}")


def _key_value(kv: Any) -> KeyValue:
    return KeyValue(key=kv.key.decode(), value=bytes(kv.value), mod_revision=int(kv.mod_revision))


def _event(ev: Any) -> Event:
    kind: Literal["put", "delete"] = "delete" if ev.type == rpc.Event.DELETE else "put"
    value = b"" if kind == "delete" else bytes(ev.kv.value)
    return Event(type=kind, key=ev.kv.key.decode(), value=value, mod_revision=int(ev.kv.mod_revision))


def _batches(events: Sequence[Any]) -> Iterator[builtins.list[Event]]:
    """Split one watch response into one batch per revision (etcd may pack several revisions into one)."""
    batch: list[Event] = []
    for ev in map(_event, events):
        if batch and batch[-1].mod_revision != ev.mod_revision:
            yield batch
            batch = []
        batch.append(ev)
    if batch:
        yield batch


class EtcdStore:
    """A ``Store`` on an etcd cluster; task-safe (one gRPC channel, shared)."""

    def __init__(self, client: Any, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._closed = False

    def _is_closed(self) -> bool:
        return self._closed

    @classmethod
    async def connect(cls, url: str, *, request_timeout: float = 5.0) -> Self:
        """Connect to the first endpoint of ``url`` that answers; ``StoreUnavailable`` when none does. With several
        endpoints, one channel fails over between them for as long as the store is open.

        ``request_timeout`` bounds every unary request (seconds); watches are unbounded.
        """
        failures = []
        endpoints = parse_endpoints(url)
        if len(endpoints) > 1:
            # One channel over every member (``tollway.grpc_targets``): when the member it talks to dies, the
            # channel moves to the next, so the store outlives any one member. (aetcd joins host and port with
            # a colon, so the last address's port goes in ``port``.)
            target = static_target(endpoints)
            if target is not None:
                head, _, last_port = target.rpartition(":")
                endpoints = [(head, int(last_port))]
        for host, port in endpoints:
            client = aetcd.Client(host=host, port=port, timeout=request_timeout, options=_CHANNEL_OPTIONS)
            store = cls(client, request_timeout)
            try:
                with _translated("connect"):
                    await client.connect()
                await store.get("/")  # a cheap read: fail here, not at the first real request
            except StoreUnavailable as e:
                failures.append(f"{host}:{port}: {e}")
                await store.close()
                continue
            return store
        raise StoreUnavailable("no etcd endpoint answered: " + "; ".join(failures))

    def _kv(self) -> Any:
        if self._closed or self._client.kvstub is None:
            raise StoreUnavailable("the etcd store is closed")
        return self._client.kvstub

    async def get(self, key: str) -> KeyValue | None:
        with _translated("get", self._is_closed):
            resp = await self._kv().Range(rpc.RangeRequest(key=key.encode()), timeout=self._timeout)
        return _key_value(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str) -> Range:
        key, end = prefix_range(prefix)
        request = rpc.RangeRequest(
            key=key, range_end=end, sort_order=rpc.RangeRequest.ASCEND, sort_target=rpc.RangeRequest.KEY
        )
        with _translated("list", self._is_closed):
            resp = await self._kv().Range(request, timeout=self._timeout)
        # One Range request is served from one MVCC read view: every item and the header share a revision.
        return Range(items=tuple(map(_key_value, resp.kvs)), revision=int(resp.header.revision))

    async def txn(
        self,
        compares: Sequence[Compare],
        puts: Sequence[tuple[str, bytes]] = (),
        deletes: Sequence[str] = (),
    ) -> TxnResult:
        check_txn(puts, deletes)
        guard = [
            rpc.Compare(
                key=c.key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD, mod_revision=c.mod_revision
            )
            for c in compares
        ]
        ops = [rpc.RequestOp(request_put=rpc.PutRequest(key=k.encode(), value=v)) for k, v in puts]
        ops += [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k.encode())) for k in deletes]
        with _translated("txn", self._is_closed):
            resp = await self._kv().Txn(rpc.TxnRequest(compare=guard, success=ops), timeout=self._timeout)
        return TxnResult(succeeded=bool(resp.succeeded), revision=int(resp.header.revision))

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[builtins.list[Event]]:
        """See ``Store.watch``: one gRPC stream per watch, cancelled when the iterator is closed."""
        key, end = prefix_range(prefix)
        create = rpc.WatchCreateRequest(key=key, range_end=end, start_revision=max(start_revision, 0))
        if self._closed or self._client.channel is None:
            raise StoreUnavailable("the etcd store is closed")
        call = rpc.WatchStub(self._client.channel).Watch(metadata=self._client.metadata)
        try:
            with _translated("watch", self._is_closed):
                await call.write(rpc.WatchRequest(create_request=create))
                while True:
                    resp = await call.read()
                    if resp is grpc.aio.EOF:  # type: ignore[attr-defined]  # missing from grpc-stubs
                        raise StoreUnavailable("etcd watch: the server ended the stream")
                    if resp.compact_revision:
                        raise Compacted(int(resp.compact_revision))
                    if resp.canceled:  # e.g. the member lost its leader: the watch is lost, not refused
                        raise StoreUnavailable(f"etcd watch: cancelled by the server: {resp.cancel_reason}")
                    for batch in _batches(resp.events):
                        yield batch
        finally:
            call.cancel()

    # --- Leases: what the replicas' election and presence keys live under (``controlplane.ha``) --------------

    async def grant_lease(self, ttl_s: int) -> int:
        """A new etcd lease of ``ttl_s`` seconds; its id. Keys put under it vanish when it expires."""
        with _translated("lease grant", self._is_closed):
            resp = await self._lease().LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self._timeout)
        return int(resp.ID)

    async def keep_alive(self, lease_id: int) -> int:
        """Refresh the lease once; its new TTL in seconds, 0 when it has expired (its keys are gone)."""
        with _translated("lease keep-alive", self._is_closed):
            call = self._lease().LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                                                timeout=self._timeout)
            async for reply in call:
                return max(0, int(reply.TTL))
        return 0

    async def revoke_lease(self, lease_id: int) -> None:
        """End the lease now, deleting its keys (a replica stepping down cleanly)."""
        with _translated("lease revoke", self._is_closed):
            await self._lease().LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=self._timeout)

    async def put_leased(self, compares: Sequence[Compare], key: str, value: bytes, lease_id: int) -> TxnResult:
        """``txn(compares, [(key, value)])`` with the key attached to ``lease_id``."""
        guard = [rpc.Compare(key=c.key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                             mod_revision=c.mod_revision) for c in compares]
        op = rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value, lease=lease_id))
        with _translated("txn", self._is_closed):
            resp = await self._kv().Txn(rpc.TxnRequest(compare=guard, success=[op]), timeout=self._timeout)
        return TxnResult(succeeded=bool(resp.succeeded), revision=int(resp.header.revision))

    def _lease(self) -> Any:
        if self._closed or self._client.leasestub is None:
            raise StoreUnavailable("the etcd store is closed")
        return self._client.leasestub

    async def compact(self, revision: int) -> None:
        try:
            with _translated("compact", self._is_closed):
                await self._kv().Compact(rpc.CompactionRequest(revision=revision, physical=True), timeout=self._timeout)
        except StoreError as e:
            # Compacting again at or below the compaction revision is a no-op, as in the embedded store.
            if isinstance(e, StoreUnavailable) or "has been compacted" not in str(e):
                raise

    async def close(self) -> None:
        """Close the channel; pending watches then raise ``StoreUnavailable``. Idempotent."""
        self._closed = True
        with _translated("close"):
            await self._client.close()
