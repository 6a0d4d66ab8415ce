"""A data plane that goes silent without closing its connection is shown disconnected, and its stream is ended.

Silent, not gone: its TCP connection stays open and nothing ever closes it (a frozen process, a lost host, a
partition), so only the control plane's count of missed heartbeats notices. The control plane is real (on the
parametrized ``store``); the data planes are a real ``python -m dataplane.main`` process frozen with SIGSTOP, and
a raw gRPC stream that stops writing.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from controlplane.server import ControlPlane
from dataplane.main import environment
from tests.cli.gatectl_process import ROOT, Running, base_env
from tests.discovery.conftest import DP_TOKEN, dataplane_record, dp_settings
from tollway.grpc_options import CLIENT_OPTIONS
from tollway.pb import discovery_pb2 as dpb
from tollway.pb import discovery_pb2_grpc as dgrpc

MISSED = 3  # the control plane's default ``dataplane_missed_heartbeats``
SLACK_S = 2.0  # for a loaded machine: what a data plane's disconnect may take beyond the bound


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@pytest.fixture
def frozen_data_plane(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Running]:
    """``python -m dataplane.main`` (what ``gatectl dataplane serve`` becomes) with 0.2 s heartbeats; stopped
    (thawed first) at the end."""
    settings = dp_settings(control_plane.grpc_target, tmp_path / "dp", node_id="dp-frozen", heartbeat_interval_s=0.2)
    out, err = tmp_path / "dp.out", tmp_path / "dp.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "dataplane.main"], cwd=ROOT, stdout=stdout, stderr=stderr,
                                   env=environment(settings, base_env(tmp_path)))
    try:
        yield Running(process, out, err)
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_frozen_data_plane_is_shown_disconnected_and_connected_again_once_thawed(
    control_plane: ControlPlane, frozen_data_plane: Running, caplog: pytest.LogCaptureFixture
) -> None:
    interval = 0.2
    record = await dataplane_record(control_plane, lambda r: r["status"] == "ACK" and r["connected"], within=30.0)
    assert record["nodeId"] == "dp-frozen"

    ended = f"discovery stream to {control_plane.grpc_target}: "
    ends_before = frozen_data_plane.stderr.read_text().count(ended)
    frozen_data_plane.process.send_signal(signal.SIGSTOP)  # its sockets stay open: no FIN, no RST
    frozen = time.monotonic()
    await dataplane_record(control_plane, lambda r: r["connected"] is False,
                           within=(MISSED + 1) * interval + SLACK_S)
    assert time.monotonic() - frozen <= (MISSED + 1) * interval + SLACK_S

    assert "data plane dp-frozen sent nothing for 3 heartbeat intervals of 0.2 s: ending its stream" in caplog.text

    frozen_data_plane.process.send_signal(signal.SIGCONT)
    # Connected again means a new stream: the old one's messages no longer count, even if it had stayed open.
    record = await dataplane_record(control_plane, lambda r: r["connected"] is True, within=10.0)
    assert record["status"] == "ACK"
    # Woken up, the data plane found its stream ended and reconnected. (The reason it logs is the control plane's
    # UNAVAILABLE, or gRPC's INTERNAL when its first heartbeat's write races with that status.)
    log = frozen_data_plane.stderr.read_text()
    assert log.count(ended) > ends_before, log


async def test_a_silent_stream_is_ended_and_its_last_message_stays_its_last_seen(
    control_plane: ControlPlane,
) -> None:
    interval = 0.5
    async with grpc.aio.insecure_channel(control_plane.grpc_target, options=CLIENT_OPTIONS) as channel:
        call = dgrpc.DiscoveryStub(channel).StreamSnapshots(metadata=(("authorization", f"Bearer {DP_TOKEN}"),))
        await call.write(dpb.DiscoveryRequest(node_id="dp-raw", region="eu", heartbeat_interval_s=interval))
        response = await call.read()
        assert isinstance(response, dpb.DiscoveryResponse)
        answer = dpb.DiscoveryRequest(node_id="dp-raw", region="eu", version=response.snapshot.version,
                                      response_nonce=response.nonce)
        await call.write(answer)
        await dataplane_record(control_plane, lambda r: r["status"] == "ACK" and r["connected"])

        # Late but alive: heartbeats one interval late, every time, never end the stream.
        answer.heartbeat = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        for beat in (1, 2):
            await asyncio.sleep(start + beat * 2 * interval - loop.time())
            last = time.time()
            await call.write(answer)
            record = await dataplane_record(control_plane, lambda r: True)
            assert record["connected"] is True

        # Silent: the stream stays open, nothing more is written.
        record = await dataplane_record(control_plane, lambda r: r["connected"] is False,
                                        within=(MISSED + 1) * interval + SLACK_S)
        assert time.time() - last >= MISSED * interval
        assert record["status"] == "ACK"
        # Kept from the last message (at ``last``, give or take its way there), not the time it was found silent.
        assert _iso(last) <= record["lastSeen"] <= _iso(last + interval)

        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ended.value.details() == "nothing received for 3 heartbeat intervals of 0.5 s: the stream is ended"
