"""The ``Store`` contract, run against both backends (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.store.base import Compacted, Compare, Event, Range, Store, StoreError, StoreUnavailable

STEP = 5.0  # seconds a watch may take to deliver what is already written


async def put(store: Store, key: str, value: bytes) -> int:
    result = await store.txn([], puts=[(key, value)])
    assert result.succeeded
    return result.revision


async def next_batch(events: AsyncIterator[list[Event]]) -> list[Event]:
    return await asyncio.wait_for(anext(events), STEP)


async def test_get_put_delete(store: Store) -> None:
    assert await store.get("/t/a") is None
    first = await put(store, "/t/a", b"1")
    kv = await store.get("/t/a")
    assert kv is not None
    assert (kv.key, kv.value, kv.mod_revision) == ("/t/a", b"1", first)

    second = await put(store, "/t/a", b"2")
    assert second == first + 1
    kv = await store.get("/t/a")
    assert kv is not None
    assert (kv.value, kv.mod_revision) == (b"2", second)

    deleted = await store.txn([], deletes=["/t/a"])
    assert deleted.succeeded
    assert deleted.revision == second + 1
    assert await store.get("/t/a") is None

    nothing = await store.txn([], deletes=["/t/a"])  # deleting an absent key changes nothing
    assert nothing.succeeded
    assert nothing.revision == deleted.revision


async def test_list_returns_prefix_sorted_at_its_revision(store: Store) -> None:
    await put(store, "/t/b", b"b")
    both = await store.txn([], puts=[("/t/a", b"a"), ("/u/x", b"x")])
    last = await put(store, "/t/c", b"c")

    listing = await store.list("/t/")
    assert [(kv.key, kv.value) for kv in listing.items] == [("/t/a", b"a"), ("/t/b", b"b"), ("/t/c", b"c")]
    assert listing.items[0].mod_revision == both.revision
    assert listing.revision == last

    everything = await store.list("")
    assert [kv.key for kv in everything.items] == ["/t/a", "/t/b", "/t/c", "/u/x"]
    assert (await store.list("/nothing/")).items == ()


async def test_list_is_atomic_while_writers_run(store: Store) -> None:
    """A writer keeps /t/a and /t/b equal; no listing may show them apart or items newer than its revision."""

    async def writer() -> None:
        for i in range(60):
            value = str(i).encode()
            await store.txn([], puts=[("/t/a", value), ("/t/b", value)])

    task = asyncio.create_task(writer())
    listings = 0
    while not task.done() or listings == 0:
        listing = await store.list("/t/")
        listings += 1
        values = {kv.key: kv.value for kv in listing.items}
        assert values.get("/t/a") == values.get("/t/b")
        assert all(kv.mod_revision <= listing.revision for kv in listing.items)
        await asyncio.sleep(0)
    await task
    assert listings > 1


async def test_txn_with_stale_compare_writes_nothing(store: Store) -> None:
    created = await put(store, "/t/k", b"v1")
    won = await store.txn([Compare("/t/k", created)], puts=[("/t/k", b"v2"), ("/t/other", b"o")])
    assert won.succeeded

    lost = await store.txn([Compare("/t/k", created)], puts=[("/t/k", b"v3"), ("/t/new", b"n")], deletes=["/t/other"])
    assert not lost.succeeded
    assert lost.revision == won.revision  # the current revision, unchanged
    kv = await store.get("/t/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision) == (b"v2", won.revision)
    assert await store.get("/t/new") is None
    assert await store.get("/t/other") is not None


async def test_compare_on_absent_key_uses_revision_zero(store: Store) -> None:
    created = await store.txn([Compare("/t/lock", 0)], puts=[("/t/lock", b"me")])
    assert created.succeeded
    again = await store.txn([Compare("/t/lock", 0)], puts=[("/t/lock", b"you")])
    assert not again.succeeded
    assert await store.txn([Compare("/t/lock", created.revision)], deletes=["/t/lock"])
    after_delete = await store.txn([Compare("/t/lock", 0)], puts=[("/t/lock", b"you")])
    assert after_delete.succeeded
    kv = await store.get("/t/lock")
    assert kv is not None
    assert kv.value == b"you"


async def test_txn_touching_a_key_twice_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="only once"):
        await store.txn([], puts=[("/t/a", b"1")], deletes=["/t/a"])
    assert await store.get("/t/a") is None


async def test_watch_from_a_revision_receives_every_later_change_in_order(store: Store) -> None:
    first = await put(store, "/t/a", b"a")
    pair = await store.txn([], puts=[("/t/b", b"b"), ("/t/c", b"c")])
    gone = await store.txn([], deletes=["/t/a"])
    await put(store, "/elsewhere", b"x")
    later = await put(store, "/t/d", b"d")

    events = aiter(store.watch("/t/", first + 1))
    assert await next_batch(events) == [
        Event("put", "/t/b", b"b", pair.revision),
        Event("put", "/t/c", b"c", pair.revision),
    ]
    assert await next_batch(events) == [Event("delete", "/t/a", b"", gone.revision)]
    assert await next_batch(events) == [Event("put", "/t/d", b"d", later)]

    live = await store.txn([], puts=[("/t/e", b"e")], deletes=["/t/b"])
    assert await next_batch(events) == [
        Event("put", "/t/e", b"e", live.revision),
        Event("delete", "/t/b", b"", live.revision),
    ]
    await events.aclose()  # type: ignore[attr-defined]


async def test_watch_from_a_compacted_revision_raises_compacted(store: Store) -> None:
    first = await put(store, "/t/a", b"1")
    await put(store, "/t/a", b"2")
    third = await put(store, "/t/a", b"3")
    await store.compact(third)
    await store.compact(first)  # compacting below the compaction revision again is a no-op

    with pytest.raises(Compacted) as raised:
        await next_batch(aiter(store.watch("/t/", first)))
    assert raised.value.compact_revision == third

    from_oldest = aiter(store.watch("/t/", third))
    assert await next_batch(from_oldest) == [Event("put", "/t/a", b"3", third)]
    await from_oldest.aclose()  # type: ignore[attr-defined]


async def test_compacting_a_future_revision_is_refused(store: Store) -> None:
    current = await put(store, "/t/a", b"1")
    with pytest.raises(StoreError):
        await store.compact(current + 10)


async def mirror(store: Store, prefix: str, listing: Range, done_key: str) -> tuple[dict[str, bytes], int]:
    """The control plane's loop (DESIGN.md section 3): from a listing at R watch from R + 1; on Compacted,
    relist and watch again. Returns the mirrored state once ``done_key`` appears, and how often it relisted."""
    relists = 0
    while True:
        state = {kv.key: kv.value for kv in listing.items}
        if done_key in state:  # the relist already saw the end
            return state, relists
        try:
            async for batch in store.watch(prefix, listing.revision + 1):
                for event in batch:
                    if event.type == "put":
                        state[event.key] = event.value
                    else:
                        state.pop(event.key, None)
                if done_key in state:
                    return state, relists
        except Compacted:
            relists += 1
            listing = await store.list(prefix)


async def test_relist_and_rewatch_after_compaction_loses_nothing(store: Store) -> None:
    for i in range(5):
        await put(store, f"/t/{i}", b"old")
    stale = await store.list("/t/")  # the follower listed here, then fell behind a compaction
    await store.txn([], puts=[("/t/0", b"new"), ("/t/9", b"added")], deletes=["/t/1"])
    await store.compact(await put(store, "/t/2", b"new"))

    follower = asyncio.create_task(mirror(store, "/t/", stale, "/t/done"))
    for i in range(3, 6):
        await store.txn([], puts=[(f"/t/{i}", b"live")], deletes=[f"/t/{i - 3}"])
        await asyncio.sleep(0.01)
    await put(store, "/t/done", b"")
    state, relists = await asyncio.wait_for(follower, STEP)

    assert relists == 1
    assert state == {kv.key: kv.value for kv in (await store.list("/t/")).items}
    assert state["/t/9"] == b"added"
    assert "/t/1" not in state


async def test_close_ends_pending_watches_with_unavailable(store: Store) -> None:
    revision = await put(store, "/t/a", b"1")
    events = aiter(store.watch("/t/", revision))
    await next_batch(events)
    pending = asyncio.ensure_future(next_batch(events))
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await pending
    with pytest.raises(StoreUnavailable):
        await store.get("/t/a")
