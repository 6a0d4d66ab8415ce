"""The grant file is written when a restart would restore something else, not at every lease renewal.

A data plane renews its leases every second; each answer pushes the grants' expiries one second on. Writing
the file (two fsyncs) for that alone kept an idle data plane's disk busy for ever. What a restart restores must
still be safe: a grant's amount as answered, and an expiry never later than the one granted.

Real gRPC, sockets and store for the end-to-end case.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from controlplane.store.base import Store
from dataplane.core.limits.budget import SavedAllowance
from dataplane.sync.grants import restores_differently
from tests.budget.test_budget_fleet import setup_policy
from tests.discovery.conftest import dp_settings, eventually, running_control_plane, running_data_plane

NOW = 1_000_000.0


def allowance(granted: int = 100, expires_at: float = NOW + 900, checked_out: int = 10,
              scope: str = "tenant/acme") -> SavedAllowance:
    return SavedAllowance(scope, "2026-12", granted, expires_at, checked_out)


@pytest.mark.pure
def test_a_renewal_that_only_moves_expiries_a_little_is_not_worth_a_write() -> None:
    on_disk = [allowance()]
    assert not restores_differently(on_disk, [allowance(expires_at=NOW + 901)], NOW + 1)
    assert not restores_differently(on_disk, [allowance(expires_at=NOW + 1000)], NOW + 100)


@pytest.mark.pure
def test_what_a_restart_would_restore_otherwise_is_written() -> None:
    on_disk = [allowance()]
    assert restores_differently(None, [allowance()], NOW)  # nothing written yet
    assert restores_differently(on_disk, [allowance(granted=50)], NOW)  # a grant taken back must not be served
    assert restores_differently(on_disk, [allowance(granted=200)], NOW)
    assert restores_differently(on_disk, [allowance(checked_out=20)], NOW)
    assert restores_differently(on_disk, [allowance(), allowance(scope="key/k1")], NOW)  # a new allowance
    assert restores_differently(on_disk, [], NOW)
    assert restores_differently(on_disk, [allowance(expires_at=NOW + 600)], NOW)  # brought forward
    # Pushed on so far that the file's expiry has less than half the grant's remaining life.
    assert restores_differently(on_disk, [allowance(expires_at=NOW + 1400)], NOW + 500)


async def test_an_idle_data_plane_does_not_rewrite_its_grant_file_at_every_renewal(
        store: Store, tmp_path: Path) -> None:
    await setup_policy(store, "1")
    async with running_control_plane(store, tmp_path / "cp") as cp, \
            running_data_plane(dp_settings(cp.grpc_target, tmp_path / "dp")) as dp:
        await eventually(lambda: dp.is_ready and dp.leases.answers > 0, what="a snapshot and a first grant")
        assert dp.persister is not None
        await asyncio.sleep(0.5)  # the write after the first grant
        writes, answers = dp.persister.writes, dp.leases.answers
        await eventually(lambda: dp.leases.answers >= answers + 3, within=10.0, what="three renewals")
        assert dp.persister.writes == writes
        # The file still holds the grant, with an expiry ahead and not past what the control plane granted.
        saved = orjson.loads((tmp_path / "dp" / "grants.json").read_bytes())["allowances"]
        live = {(a.scope, a.period): a for a in dp.budgets.saved()}
        assert saved
        for entry in saved:
            current = live[(entry["scope"], entry["period"])]
            assert entry["granted"] == current.granted
            assert time.time() < entry["expires_at"] <= current.expires_at
