"""The systemd units of ``deploy/systemd``: valid for systemd itself, sandboxed, and their ExecStart really serves.

``systemd-analyze verify`` and ``systemd-analyze security --offline`` work on unit files without a running
systemd (as in a container). Verify only warns about an unknown directive (exit 0), so a unit counts as valid only
when verify exits 0 *and* says nothing about it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli.gatectl_process import ROOT, Running, base_env, gatectl
from tests.conftest import EtcdProcess, free_port
from tests.deploy.recipes import (
    INSTALLED_GATECTL,
    UNITS,
    exec_start_argv,
    http_get,
    replace_option,
    start,
    unit_directives,
    unit_value,
    venv_tool,
    wait_for_status,
)

CONTROLPLANE = UNITS / "tollway-controlplane.service"
DATAPLANE = UNITS / "tollway-dataplane@.service"
# systemd-analyze security's overall exposure (0.0 to 10.0) that a unit may have at most: "OK" is below 3.0.
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is not installed; install Debian's systemd package (scripts/setup.sh dev)")
    return found


def installed_copy(unit: Path, directory: Path, text: str | None = None) -> Path:
    """The unit as it would be installed here: ExecStart names this virtualenv's gatectl; a template instantiated
    (``tollway-dataplane@eu.service``), as ``systemctl enable`` would."""
    content = (text if text is not None else unit.read_text(encoding="utf-8"))
    assert INSTALLED_GATECTL in content
    name = unit.name.replace("@.", "@eu.")
    path = directory / name
    path.write_text(content.replace(INSTALLED_GATECTL, venv_tool("gatectl")), encoding="utf-8")
    return path


def verify(path: Path) -> tuple[int, list[str]]:
    """Exit status of ``systemd-analyze verify`` and what it says about this unit file."""
    result = subprocess.run([systemd_analyze(), "verify", "--man=no", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    said = [line for line in (result.stdout + result.stderr).splitlines() if path.name in line]
    return result.returncode, said


@pytest.mark.parametrize("unit", [CONTROLPLANE, DATAPLANE], ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    code, said = verify(installed_copy(unit, tmp_path))
    assert (code, said) == (0, [])


@pytest.mark.parametrize(("breakage", "expected"), [
    (("PrivateTmp=yes", "PrivateTmp=yes\nProtectEverything=yes"), r"Unknown key 'ProtectEverything'"),
    (("ProtectSystem=strict", "ProtectSystem=stricter"), r"protect system value"),
    ((INSTALLED_GATECTL, "/nonexistent/gatectl"), r"/nonexistent/gatectl"),
])
def test_verify_catches_a_broken_unit(breakage: tuple[str, str], expected: str, tmp_path: Path) -> None:
    """The check above can fail: each breakage of the data-plane unit is reported."""
    old, new = breakage
    text = DATAPLANE.read_text(encoding="utf-8")
    assert old in text
    broken = text.replace(old, new, 1)
    if new.startswith("/nonexistent"):  # keep it out of installed_copy's substitution
        path = tmp_path / "tollway-dataplane@eu.service"
        path.write_text(broken, encoding="utf-8")
    else:
        path = installed_copy(DATAPLANE, tmp_path, broken)
    code, said = verify(path)
    assert code != 0 or said
    assert re.search(expected, "\n".join(said)), said


@pytest.mark.parametrize("unit", [CONTROLPLANE, DATAPLANE], ids=lambda p: p.name)
def test_unit_is_sandboxed(unit: Path, tmp_path: Path) -> None:
    keys = {(k, v) for _, k, v in unit_directives(unit)}
    for required in [("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                     ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")]:
        assert required in keys, f"{unit.name} lacks {required[0]}={required[1]}"
    assert unit_value(unit, "StateDirectory").startswith("tollway/")
    assert "--state-dir ${STATE_DIRECTORY}" in unit_value(unit, "ExecStart")
    # No secret in the unit: tokens and provider keys come from an EnvironmentFile outside it.
    assert not re.search(r"--(admin-|dataplane-)?token\b", unit_value(unit, "ExecStart"))
    assert unit_value(unit, "EnvironmentFile").lstrip("-").startswith("/etc/tollway/")

    path = installed_copy(unit, tmp_path)
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--no-pager", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_units_exec_start_lines_run_a_gateway(tmp_path: Path) -> None:
    """Both ExecStart lines as systemd would run them (only the store, addresses and state directories are this
    test's), the EnvironmentFile's variables set: the data plane joins and becomes ready."""
    etcd = EtcdProcess(tmp_path)
    etcd.start()
    env = base_env(tmp_path)
    tokens = {"TOLLWAY_ADMIN_TOKEN": "admin-" + "a" * 32, "TOLLWAY_DATAPLANE_TOKEN": "dp-" + "b" * 32}
    admin_port, grpc_port, dp_port, ops_port = free_port(), free_port(), free_port(), free_port()
    cp_argv = exec_start_argv(CONTROLPLANE, {}, {"STATE_DIRECTORY": str(tmp_path / "cp")})
    cp_argv = replace_option(cp_argv, "--store", etcd.url)
    for option, value in [("--admin-host", "127.0.0.1"), ("--grpc-host", "127.0.0.1"),
                          ("--admin-port", str(admin_port)), ("--grpc-port", str(grpc_port))]:
        cp_argv = replace_option(cp_argv, option, value)
    assert cp_argv[0] == INSTALLED_GATECTL
    cp = start(tmp_path, "cp", [venv_tool("gatectl"), *cp_argv[1:]], env | tokens)
    dp: Running | None = None
    try:
        wait_for_status(f"http://127.0.0.1:{admin_port}/healthz", 200)
        admin = env | {"TOLLWAY_CONTROL_PLANE": f"http://127.0.0.1:{admin_port}",
                       "TOLLWAY_ADMIN_TOKEN": tokens["TOLLWAY_ADMIN_TOKEN"]}
        applied = gatectl("apply", "-f", str(ROOT / "policies"), env=admin)
        assert applied.returncode == 0, applied.stderr

        dp_argv = exec_start_argv(DATAPLANE, {"%i": "eu", "%H": socket.gethostname()},
                                  {"STATE_DIRECTORY": str(tmp_path / "dp")})
        for option, value in [("--host", "127.0.0.1"), ("--port", str(dp_port)), ("--ops-port", str(ops_port))]:
            dp_argv = replace_option(dp_argv, option, value)
        environment_file = {"TOLLWAY_DISCOVERY": f"127.0.0.1:{grpc_port}",
                            "TOLLWAY_DATAPLANE_TOKEN": tokens["TOLLWAY_DATAPLANE_TOKEN"]}
        dp = start(tmp_path, "dp", [venv_tool("gatectl"), *dp_argv[1:]], env | environment_file)
        ready = wait_for_status(f"http://127.0.0.1:{dp_port}/readyz", 200)
        assert '"ready"' in ready
        planes = gatectl("dataplanes", env=admin)
        assert planes.returncode == 0, planes.stderr
        rows = [line.split() for line in planes.stdout.splitlines()[1:]]
        # One worker per core (the unit's default), each its own node id under the unit's --node-id %H-%i.
        grouped = (os.cpu_count() or 1) > 1
        node = re.escape(f"{socket.gethostname()}-eu") + (r"-w\d+" if grouped else "")
        assert rows and all(re.fullmatch(node, r[0]) and (r[1], r[3]) == ("eu", "ACK") for r in rows), planes.stdout
        for port in (dp_port, ops_port) if grouped else (dp_port,):
            status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
            assert status == 200 and "tollway_" in metrics
        assert (tmp_path / "dp").is_dir() and (tmp_path / "cp" / "usage.duckdb").exists()
        for secret in tokens.values():
            assert secret not in dp.stderr.read_text() + cp.stderr.read_text() + planes.stdout
    finally:
        try:
            if dp is not None:
                assert dp.interrupt() == 0, dp.stderr.read_text()
            assert cp.interrupt() == 0, cp.stderr.read_text()
        finally:
            etcd.stop()

