"""``gatectl controlplane serve`` and ``gatectl dataplane serve`` as separate processes, as in production."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.cli.gatectl_process import ROOT, base_env, gatectl, start_gatectl


def test_dataplane_joins_the_control_plane_and_both_stop_cleanly(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cp = start_gatectl(tmp_path, "cp", "controlplane", "serve", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "cp"), env=env)
    dp = None
    try:
        ready = cp.wait_for(r"admin API (http://\S+?), gRPC (\S+?),")
        admin = env | {"TOLLWAY_CONTROL_PLANE": ready.group(1),
                       "TOLLWAY_ADMIN_TOKEN": (tmp_path / "cp" / "admin-token").read_text().strip()}
        assert gatectl("apply", "-f", str(ROOT / "policies"), env=admin).returncode == 0

        token = (tmp_path / "cp" / "dataplane-token").read_text().strip()
        dp = start_gatectl(tmp_path, "dp", "dataplane", "serve", "--control-plane", ready.group(2), "--region", "eu",
                           "--port", "0", "--state-dir", str(tmp_path / "dp"), "--node-id", "edge-1", "--workers", "1",
                           env=env | {"TOLLWAY_DATAPLANE_TOKEN": token})
        dp.wait_for(r"installed snapshot")
        planes = gatectl("dataplanes", env=admin)
        row = planes.stdout.splitlines()[1].split()
        assert (row[0], row[1], row[3], row[-1]) == ("edge-1", "eu", "ACK", "yes")
        assert token not in planes.stdout and token not in dp.stderr.read_text()

        dp.process.send_signal(signal.SIGTERM)
        assert dp.process.wait(15) == 0, dp.stderr.read_text()
        assert "data plane stopped" in dp.stderr.read_text()
    finally:
        if dp is not None:
            dp.interrupt()
        assert cp.interrupt() == 0, cp.stderr.read_text()
    assert "control plane stopped" in cp.stderr.read_text()


def test_a_taken_port_is_one_line_and_exit_4(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gatectl("controlplane", "serve", "--admin-port", str(port), "--grpc-port", "0", "--state-dir",
                         str(tmp_path / "cp"), env=base_env(tmp_path))
    assert result.returncode == 4
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "cannot start the control plane" in errors[0] and str(port) in errors[0]
    assert "Traceback" not in result.stderr
