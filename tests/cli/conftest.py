"""Fixtures of the gatectl tests: a control plane as gatectl's user runs it, the example policy to edit, and the
data planes some tests run in process."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.gatectl_process import ADMIN_TOKEN, ROOT, base_env, start_gatectl
from tests.discovery.conftest import data_plane_factory  # noqa: F401 (a fixture: test_gatectl_replay.py)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A running control plane; the environment that points gatectl at it. Stopped with Ctrl-C, which must work."""
    server_env = base_env(tmp_path)
    cp = start_gatectl(tmp_path, "controlplane", "controlplane", "serve", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "cp"), "--admin-token", ADMIN_TOKEN, env=server_env)
    url = cp.wait_for(r"control plane ready: admin API (http://\S+?),").group(1)
    yield server_env | {"TOLLWAY_CONTROL_PLANE": url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN, "USER": "tester"}
    assert cp.interrupt() == 0, cp.stderr.read_text()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the example policy, to edit."""
    return Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))
