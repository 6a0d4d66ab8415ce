"""What only the embedded store promises: durability in its directory, one opener, bounded history."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.store.base import Compacted, Event, StoreError
from controlplane.store.embedded import LOG_FILE, EmbeddedStore

REPO = Path(__file__).resolve().parents[2]


async def test_state_survives_reopen_through_log_and_checkpoints(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path, checkpoint_every=3)
    for i in range(7):  # two checkpoints, then one line left in the log
        await store.txn([], puts=[(f"/k/{i}", str(i).encode())])
    last = await store.txn([], puts=[("/k/0", b"again")], deletes=["/k/1"])
    before = await store.list("")
    await store.close()

    reopened = await EmbeddedStore.open(tmp_path, checkpoint_every=3)
    after = await reopened.list("")
    assert after == before
    assert after.revision == last.revision
    assert await reopened.get("/k/1") is None
    following = await reopened.txn([], puts=[("/k/new", b"n")])
    assert following.revision == last.revision + 1
    await reopened.close()


async def test_history_after_reopen_starts_where_the_log_does(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path, checkpoint_every=2)
    revisions = [(await store.txn([], puts=[("/k", str(i).encode())])).revision for i in range(3)]
    await store.close()

    reopened = await EmbeddedStore.open(tmp_path, checkpoint_every=2)
    # Revisions 1-2 went into a checkpoint; revision 3 is still a log line, so a watch can start there.
    events = aiter(reopened.watch("/k", revisions[2]))
    assert await asyncio.wait_for(anext(events), 1) == [Event("put", "/k", b"2", revisions[2])]
    with pytest.raises(Compacted) as raised:
        await anext(aiter(reopened.watch("/k", revisions[1])))
    assert raised.value.compact_revision == revisions[2]
    await reopened.close()


async def test_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path)
    kept = await store.txn([], puts=[("/k", b"kept")])
    await store.close()
    with (tmp_path / LOG_FILE).open("ab") as log:
        log.write(b'{"r":2,"p":[["/k","bG9z')  # a crash in the middle of appending revision 2

    reopened = await EmbeddedStore.open(tmp_path)
    kv = await reopened.get("/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision) == (b"kept", kept.revision)
    await reopened.txn([], puts=[("/k", b"after")])  # appended after the cut, not onto the torn line
    await reopened.close()

    again = await EmbeddedStore.open(tmp_path)
    kv = await again.get("/k")
    assert kv is not None
    assert (kv.value, kv.mod_revision) == (b"after", kept.revision + 1)
    await again.close()


async def test_corruption_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path)
    for i in range(3):
        await store.txn([], puts=[("/k", str(i).encode())])
    await store.close()
    lines = (tmp_path / LOG_FILE).read_bytes().split(b"\n")
    lines[1] = b"garbage"
    (tmp_path / LOG_FILE).write_bytes(b"\n".join(lines))

    with pytest.raises(StoreError, match="corrupt"):
        await EmbeddedStore.open(tmp_path)


async def test_compaction_survives_reopen(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path)
    revisions = [(await store.txn([], puts=[("/k", str(i).encode())])).revision for i in range(3)]
    await store.compact(revisions[1])
    await store.close()

    reopened = await EmbeddedStore.open(tmp_path)
    with pytest.raises(Compacted) as raised:
        await anext(aiter(reopened.watch("/k", revisions[0])))
    assert raised.value.compact_revision == revisions[1]
    await reopened.close()


async def test_a_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    store = await EmbeddedStore.open(tmp_path)
    with pytest.raises(StoreError, match="in use by another process"):
        await EmbeddedStore.open(tmp_path)

    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OPEN_IN_ANOTHER_PROCESS, str(tmp_path), cwd=REPO, stdout=subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(other.communicate(), 30)
    assert other.returncode == 3
    assert b"in use by another process" in stdout

    await store.close()
    reopened = await EmbeddedStore.open(tmp_path)
    await reopened.close()


_OPEN_IN_ANOTHER_PROCESS = """
import asyncio, sys
from controlplane.store.base import StoreError
from controlplane.store.embedded import EmbeddedStore
try:
    asyncio.run(EmbeddedStore.open(sys.argv[1]))
except StoreError as e:
    print(e)
    sys.exit(3)
"""


async def test_a_slow_watcher_blocks_no_writer_and_is_compacted_when_left_behind() -> None:
    store = await EmbeddedStore.open(None, history_limit=5)
    first = await store.txn([], puts=[("/k", b"0")])
    slow = aiter(store.watch("/k", first.revision))
    assert await anext(slow) == [Event("put", "/k", b"0", first.revision)]

    # The watcher does not read while 20 transactions commit: none of them waits for it.
    await asyncio.wait_for(asyncio.gather(*(store.txn([], puts=[("/k", str(i).encode())]) for i in range(20))), 1)

    with pytest.raises(Compacted) as raised:
        await anext(slow)
    assert raised.value.compact_revision == first.revision + 20 - 5 + 1
    await store.close()


async def test_memory_only_store_writes_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = await EmbeddedStore.open(None)
    await store.txn([], puts=[("/k", b"v")])
    await store.close()
    assert os.listdir(tmp_path) == []
