"""Policy storage: one interface (``Store``), two backends (etcd and an embedded single-machine store)."""

from controlplane.store.base import (
    Compacted,
    Compare,
    Event,
    KeyValue,
    Store,
    StoreError,
    StoreUnavailable,
    TxnResult,
    open_store,
)

__all__ = [
    "Compacted",
    "Compare",
    "Event",
    "KeyValue",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
    "open_store",
]
