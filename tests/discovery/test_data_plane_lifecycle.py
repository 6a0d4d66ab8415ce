"""The data plane's start-up and shutdown are owned in one place: a component that fails to start stops those
already started, and a data plane that started stops everything it started."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from dataplane.serve import DataPlane
from tests.discovery.conftest import dp_settings


def _background_tasks() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_a_port_already_taken_stops_what_was_started_before_it(tmp_path: Path) -> None:
    before = _background_tasks()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dp = DataPlane(dp_settings("127.0.0.1:9", tmp_path, port=port, host="127.0.0.1",
                                   request_log=str(tmp_path / "requests.log")))
        with pytest.raises(OSError):
            await dp.start()
    # The spool, its shipper and the request log had started before the HTTP server failed to bind.
    assert dp.spool is None and dp.shipper is None and dp.request_log is None
    await asyncio.sleep(0)
    assert _background_tasks() <= before, f"left running: {_background_tasks() - before}"
    # What was opened was closed: the same state directory opens again at once.
    again = DataPlane(dp_settings("127.0.0.1:9", tmp_path))
    await again.start()
    await again.stop()


async def test_stop_unwinds_everything_start_started(tmp_path: Path) -> None:
    before = _background_tasks()
    dp = DataPlane(dp_settings("127.0.0.1:9", tmp_path, request_log=str(tmp_path / "requests.log")))
    await dp.start()
    assert dp.url and dp.spool is not None and dp.shipper is not None and dp.request_log is not None
    assert _background_tasks() - before, "nothing ran in the background: this test tested nothing"
    await dp.stop()
    await asyncio.sleep(0)
    assert dp.spool is None and dp.shipper is None and dp.request_log is None
    assert _background_tasks() <= before, f"left running: {_background_tasks() - before}"
