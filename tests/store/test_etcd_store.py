"""What only the etcd backend must handle: URLs, key ranges, and etcd going away (on a private etcd)."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.store.base import Event, StoreError, StoreUnavailable
from controlplane.store.etcd import EtcdStore, parse_endpoints, prefix_range
from controlplane.store.open import open_store
from tests.conftest import EtcdProcess, free_port


@pytest.mark.parametrize(
    ("url", "endpoints"),
    [
        ("etcd://127.0.0.1:2379", [("127.0.0.1", 2379)]),
        ("etcd://etcd-a:1,etcd-b:2/", [("etcd-a", 1), ("etcd-b", 2)]),
        ("etcd://etcd", [("etcd", 2379)]),
        ("etcd://[::1]:23", [("[::1]", 23)]),
        ("etcd://[::1]", [("[::1]", 2379)]),
    ],
)
def test_parse_endpoints(url: str, endpoints: list[tuple[str, int]]) -> None:
    assert parse_endpoints(url) == endpoints


@pytest.mark.parametrize("url", ["etcd://", "etcd://host:port", "http://host:2379"])
def test_parse_endpoints_refuses_bad_urls(url: str) -> None:
    with pytest.raises(StoreError):
        parse_endpoints(url)


@pytest.mark.parametrize(
    ("prefix", "key_range"),
    [
        ("/a/", (b"/a/", b"/a0")),
        ("", (b"\0", b"\0")),
        ("\u00ff", (b"\xc3\xbf", b"\xc3\xc0")),
    ],
)
def test_prefix_range(prefix: str, key_range: tuple[bytes, bytes]) -> None:
    assert prefix_range(prefix) == key_range


async def test_connecting_to_nothing_is_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no etcd endpoint answered"):
        await EtcdStore.connect(f"etcd://127.0.0.1:{free_port()}", request_timeout=2)
    assert time.monotonic() - started < 5


async def test_connect_uses_the_first_endpoint_that_answers(etcd_url: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = await EtcdStore.connect(f"etcd://{dead},{etcd_url.removeprefix('etcd://')}", request_timeout=2)
    assert (await store.list("/")).revision > 0
    await store.close()


async def test_losing_etcd_makes_watches_and_requests_unavailable_until_it_returns(
    etcd_process: EtcdProcess,
) -> None:
    store = await open_store(etcd_process.url)
    written = await store.txn([], puts=[("/t/a", b"1")])
    events = aiter(store.watch("/t/", written.revision))
    assert await asyncio.wait_for(anext(events), 5) == [Event("put", "/t/a", b"1", written.revision)]
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.05)

    etcd_process.stop()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(StoreUnavailable):
        await store.get("/t/a")
    with pytest.raises(StoreUnavailable):
        await store.txn([], puts=[("/t/b", b"2")])

    etcd_process.start()  # same data and ports: the same channel reconnects
    deadline = time.monotonic() + 10
    while True:
        try:
            kv = await store.get("/t/a")
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert kv is not None
    assert kv.value == b"1"
    again = aiter(store.watch("/t/", written.revision))
    assert await asyncio.wait_for(anext(again), 5) == [Event("put", "/t/a", b"1", written.revision)]
    await store.close()
