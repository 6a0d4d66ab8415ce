"""Shared by the compliance tests: an in-process control plane on an in-memory store, and gatectl against it.

gatectl runs as a real subprocess (in a worker thread, so the control plane on this event loop keeps serving).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from controlplane.server import ControlPlane
from controlplane.store.base import Store
from controlplane.store.open import open_store
from tests.cli.gatectl_process import base_env, gatectl
from tests.discovery.conftest import cp_settings


@asynccontextmanager
async def control_plane(tmp_path: Path, *, store: Store | None = None, clock: Callable[[], float] = time.time,
                        **overrides: Any) -> AsyncIterator[tuple[ControlPlane, Store]]:
    """A started control plane on ``store`` (default: a fresh in-memory one, closed at the end)."""
    own = store is None
    store = store if store is not None else await open_store("embedded://")
    cp = ControlPlane(cp_settings(tmp_path / "cp", **overrides), store=store, clock=clock)
    await cp.start()
    try:
        yield cp, store
    finally:
        await cp.stop()
        if own:
            await store.close()


def cli_env(tmp_path: Path, cp: ControlPlane) -> dict[str, str]:
    return base_env(tmp_path) | {"TOLLWAY_CONTROL_PLANE": cp.admin_url, "TOLLWAY_ADMIN_TOKEN": cp.admin_token,
                                 "USER": "tester"}


async def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(gatectl, *args, env=env)


def write_yaml(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path
