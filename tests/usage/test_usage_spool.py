"""The spool alone: durability across SIGKILL, torn tails, stable batch boundaries, deletion once acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dataplane.record.spool import SpoolError, UsageSpool, frame
from tests.usage.conftest import record
from tollway.pb import usage_pb2 as upb

REPO = Path(__file__).resolve().parents[2]


def pending_ids(spool: UsageSpool) -> list[str]:
    return [r.request_id for b in spool.pending_batches(1000) for r in b.parsed().records]


def batches(spool: UsageSpool, max_records: int) -> list[tuple[int, list[str]]]:
    return [(b.sequence, [r.request_id for r in b.parsed().records]) for b in spool.pending_batches(max_records)]


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_a_sigkilled_process_loses_no_appended_record(tmp_path: Path) -> None:
    n = 500
    script = textwrap.dedent(f"""
        import sys, time
        from dataplane.record.spool import UsageSpool
        from tests.usage.conftest import record
        spool = UsageSpool.open(sys.argv[1], "dp-killed", segment_bytes=16_384)
        for i in range({n}):
            spool.append(record(i))
        print("appended", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "spool")], stdout=subprocess.PIPE,
                            env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"appended"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with UsageSpool.open(tmp_path / "spool", "dp-restarted") as spool:
        assert spool.backlog == n
        assert pending_ids(spool) == [f"req-{i}" for i in range(n)]
        assert spool.node_id == "dp-killed"  # batches keep the key they were created under


def test_a_torn_last_record_is_dropped_and_appending_continues(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        for i in range(5):
            spool.append(record(i))
    [segment] = tmp_path.glob("*.seg")
    whole = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(frame(record(5))[:-3])  # what a crash mid-write leaves behind
    with UsageSpool.open(tmp_path, "dp") as spool:
        assert segment.stat().st_size == whole
        assert spool.backlog == 5
        spool.append(record(6))
        assert pending_ids(spool) == ["req-0", "req-1", "req-2", "req-3", "req-4", "req-6"]


def test_a_zero_filled_tail_is_dropped(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        spool.append(record(0))
    [segment] = tmp_path.glob("*.seg")
    with open(segment, "ab") as f:
        f.write(b"\0" * 4096)  # a crash can leave allocated but unwritten blocks
    with UsageSpool.open(tmp_path, "dp") as spool:
        assert pending_ids(spool) == ["req-0"]


def test_batch_boundaries_and_sequences_survive_a_restart(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        epoch = spool.epoch
        for i in range(7):
            spool.append(record(i))
        first = spool.next_batch(0, max_records=3)
        assert first is not None and first.sequence == 1 and first.records == 3
    with UsageSpool.open(tmp_path, "dp") as spool:
        assert spool.epoch == epoch
        spool.append(record(7))
        replayed = list(spool.pending_batches(max_records=100))
        assert replayed[0] == first  # same sequence, same records, byte for byte
        assert [(b.sequence, b.records, len(b.parsed().records)) for b in replayed] == [(1, 3, 3), (2, 4, 4), (3, 1, 1)]
        assert {b.parsed().epoch for b in replayed} == {epoch}


def test_acknowledged_batches_are_deleted_and_never_replayed(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp", segment_bytes=1_000) as spool:
        for i in range(40):
            spool.append(record(i))
        assert len(segment_files(tmp_path)) > 3
        cut = batches(spool, 10)
        assert [ids for _, ids in cut] and sum(len(ids) for _, ids in cut) == 40
        middle = cut[len(cut) // 2][0]
        assert spool.ack(spool.epoch, middle)
        assert not spool.ack(spool.epoch, middle)  # old news
        assert not spool.ack("another-epoch", middle + 1)
        left = [i for seq, ids in cut if seq > middle for i in ids]
        assert pending_ids(spool) == left and spool.backlog == len(left)
    with UsageSpool.open(tmp_path, "dp", segment_bytes=1_000) as spool:
        assert pending_ids(spool) == left
        last = cut[-1][0]
        assert spool.ack(spool.epoch, last)
        assert spool.backlog == 0 and pending_ids(spool) == []
        spool.append(record(99))
        assert batches(spool, 10) == [(last + 1, ["req-99"])]  # sequences keep increasing
    assert len(segment_files(tmp_path)) == 1  # only the one holding the unacknowledged record


def test_an_ack_for_a_batch_never_cut_is_refused(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        spool.append(record(0))
        assert not spool.ack(spool.epoch, 1)
        assert spool.backlog == 1


def test_a_spool_has_one_owner(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp"), pytest.raises(SpoolError, match="in use"):
        UsageSpool.open(tmp_path, "dp")


def test_appends_after_close_are_counted_as_lost(tmp_path: Path) -> None:
    spool = UsageSpool.open(tmp_path, "dp")
    spool.close()
    spool.append(upb.UsageRecord(request_id="late"))
    assert spool.lost == 1


def test_batches_stay_well_below_the_grpc_message_limit(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        for i in range(5):
            spool.append(upb.UsageRecord(request_id=f"big-{i}", tags=["t" * 900_000]))
        sizes = [len(b.wire) for b in spool.pending_batches(max_records=500)]
        assert sum(b.records for b in spool.pending_batches(500)) == 5
        assert len(sizes) >= 3 and max(sizes) < 4 * 1024 * 1024


def test_a_batch_goes_out_as_the_bytes_protobuf_would_write(tmp_path: Path) -> None:
    with UsageSpool.open(tmp_path, "dp") as spool:
        for i in range(3):
            spool.append(record(i))
        batch = spool.next_batch(0, max_records=10)
        assert batch is not None
        built = upb.UsageBatch(node_id="dp", epoch=spool.epoch, sequence=1, records=[record(i) for i in range(3)])
        assert batch.wire == built.SerializeToString()
