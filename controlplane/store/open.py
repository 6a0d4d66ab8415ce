"""Opening a store by URL: the one place that knows the backends (``base`` knows only the contract)."""

from __future__ import annotations

from controlplane.store.base import Store, StoreError
from controlplane.store.embedded import EmbeddedStore
from controlplane.store.etcd import EtcdStore


async def open_store(url: str) -> Store:
    """``etcd://host:port[,host:port]`` or ``embedded:///path/to/dir`` (``embedded://`` alone: in memory)."""
    if url.startswith("etcd://"):
        return await EtcdStore.connect(url)
    if url.startswith("embedded://"):
        return await EmbeddedStore.open(url.removeprefix("embedded://") or None)
    raise StoreError(f"unsupported store URL {url!r}: use etcd://HOST:PORT or embedded:///DIR")
