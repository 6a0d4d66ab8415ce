"""Static stability with budgets, shown with real processes as a user runs them (issue 12): etcd, ``gatectl
controlplane serve --store etcd://... --lease-ttl 60`` and two ``gatectl dataplane serve``, the openai SDK sending
20 requests a second (never retried) and keeping the exact cost of every answer.

The control plane is SIGKILLed mid-load and stays down for at least 15 s; meanwhile one data plane is stopped
with SIGTERM and the other killed with SIGKILL, each started again on its state directory, node id and port
(drained first, as a load balancer would); then the control plane is started again on the same store and ports.
Not one request of the budgeted tenant fails, the data planes renew their grants within seconds, and once the
spools have drained the ledger's spent, what the clients were told and DuckDB's usage (``gatectl usage``) are the
same to the pico-dollar, within the limit.

The scenario is ``bench.outage``'s, scaled down (its 10-minute run is in the README). The lease is longer than
the outage by a wide margin on purpose: on a loaded 2-core machine each restart can take 5-10 s (the outage lasts
until both are done), the control plane's start as long again, and the grants must last until the data planes
renew them (up to 5 s after that). An outage close to the lease is ``bench.outage``'s to measure, not a test's.
"""

from __future__ import annotations

from pathlib import Path

from bench.outage import Scenario, format_report, run
from tests.conftest import EtcdProcess

SCENARIO = Scenario(lease_ttl_s=60, outage_s=15, rate=20, data_planes=2, restarts=2, before_s=4, after_s=6,
                    budget_usd="10", settle_timeout_s=30)


async def test_an_outage_with_data_plane_restarts_fails_nothing_and_the_money_is_exact(
        etcd_process: EtcdProcess, tmp_path: Path) -> None:
    report = await run(SCENARIO, tmp_path, etcd_url=etcd_process.url)
    summary = format_report(report)

    outage = report.phases["outage"]
    assert outage.requests >= 0.5 * SCENARIO.rate * SCENARIO.outage_s, summary  # the load kept going
    assert outage.failed == 0, summary
    assert report.failed == 0, summary  # nor before, nor once the control plane is back
    assert [(r.dp, r.signal, r.exit_status) for r in report.restarts] == [(0, "SIGTERM", 0), (1, "SIGKILL", -9)], \
        summary
    # Each data plane found the control plane again (gRPC's reconnect backoff, 2 minutes by default, is capped at
    # 5 s) and renewed its grant before the one it held could expire.
    assert all(s >= 0 for s in report.renewed_s), summary
    assert report.outage_s + max(report.renewed_s) < SCENARIO.lease_ttl_s - 1, summary

    assert report.ledger_spent_pico == report.told_pico, summary  # nothing lost, nothing counted twice
    assert report.duckdb_pico == report.told_pico, summary
    assert report.duckdb_requests == report.served, summary
    assert report.ledger_spent_pico + report.ledger_outstanding_pico <= report.limit_pico, summary
