"""The store contract, modelled on etcd's: a revisioned key-value store with transactions and watches.

Errors::

    StoreError
    ├── StoreUnavailable   the backend cannot be reached (after the backend's own retries)
    └── Compacted          a watch asked for a revision that was compacted away: relist, then watch again

Revisions are the store's global, monotonically increasing counter; every successful transaction that writes
bumps it by one, and every key records the revision that last modified it (``mod_revision``).
Foreign exceptions (aetcd, grpc, OS errors) are translated into these at the backend boundary.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailable(StoreError):
    """The backend could not be reached."""


class Compacted(StoreError):
    """The requested revision is older than the store keeps; ``compact_revision`` is the oldest it has."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted; oldest available is {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True)
class Compare:
    """Guard of a transaction: the key's ``mod_revision`` must equal ``mod_revision`` (0: key absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction (unchanged when it did not succeed)


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    key: str
    value: bytes  # empty for deletes
    mod_revision: int


@dataclass(frozen=True)
class Range:
    items: Sequence[KeyValue] = field(default_factory=tuple)
    revision: int = 0  # the store revision the listing was taken at


def check_txn(puts: Sequence[tuple[str, bytes]], deletes: Sequence[str]) -> None:
    """Reject what etcd rejects too: empty keys and a key touched twice in one transaction."""
    keys = [k for k, _ in puts] + list(deletes)
    if any(not isinstance(k, str) or not k for k in keys):
        raise StoreError("keys must be non-empty strings")
    if any(not isinstance(v, bytes) for _, v in puts):
        raise StoreError("values must be bytes")
    if len(set(keys)) != len(keys):
        raise StoreError("a key may appear only once in the puts and deletes of a transaction")


class Store(Protocol):
    """Task-safe; one instance is shared by the whole control plane process."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def list(self, prefix: str) -> Range:
        """Every key under ``prefix``, sorted by key, read atomically at one revision."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        puts: Sequence[tuple[str, bytes]] = (),
        deletes: Sequence[str] = (),
    ) -> TxnResult:
        """All puts and deletes apply atomically if every compare holds, else nothing is written."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[builtins.list[Event]]:
        """Batches of events under ``prefix`` from ``start_revision`` (inclusive), one batch per revision.

        Raises ``Compacted`` when ``start_revision`` is no longer available, ``StoreUnavailable`` when the
        connection is lost; the caller then relists and watches again from the listing's revision + 1.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision`` (watches from older revisions then raise ``Compacted``)."""
        ...

    async def close(self) -> None: ...
