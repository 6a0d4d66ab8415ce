"""``gatectl report ...`` as a user runs it (a subprocess) against a real control plane holding known events."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from pathlib import Path

from controlplane.server import ControlPlane
from tests.analytics.conftest import ADMIN_TOKEN
from tests.cli.gatectl_process import ROOT, base_env


async def gatectl(cp: ControlPlane, tmp_path: Path, *args: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
    """Run gatectl without blocking the event loop the control plane serves on."""
    env = base_env(tmp_path) | {"TOLLWAY_CONTROL_PLANE": cp.admin_url, "TOLLWAY_ADMIN_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_daily_cost_as_table_csv_and_json_agree(analytics_cp: ControlPlane, tmp_path: Path) -> None:
    (code, out, err), as_csv, as_json = await asyncio.gather(  # concurrently: each gatectl start costs ~1 s
        gatectl(analytics_cp, tmp_path, "report", "daily-cost", "--by", "project"),
        gatectl(analytics_cp, tmp_path, "report", "daily-cost", "--by", "tag", "-o", "csv"),
        gatectl(analytics_cp, tmp_path, "report", "daily-cost", "--tenant", "acme", "-o", "json"))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["DAY", "PROJECT", "REQUESTS", "INPUT", "TOKENS", "OUTPUT", "TOKENS", "COST", "USD"]
    assert sum("acme/web" in line for line in lines) == 3
    assert any(line.split()[1:] == ["acme/web", "4", "4000", "400", "3.00"] for line in lines)
    # The one-line summary goes to stderr (stdout stays the table a script may read), with no progress line when
    # stderr is not a terminal.
    assert err.startswith(f"report daily-cost: {len(lines) - 1} rows, ") and " in " in err and "\r" not in err

    code, out, err = as_csv
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["tag"] for r in rows} == {"chat", "batch"}
    assert sum(int(r["requests"]) for r in rows) == 18
    assert list(rows[0]) == ["day", "tag", "requests", "input_tokens", "output_tokens", "cost_usd"]

    code, out, err = as_json
    assert code == 0, err
    answer = json.loads(out)
    assert sorted(r["costMicros"] for r in answer["rows"]) == [1_000_000, 2_000_000, 3_000_000]


async def test_latency_errors_and_top_users(analytics_cp: ControlPlane, tmp_path: Path) -> None:
    (code, out, err), errors, users = await asyncio.gather(
        gatectl(analytics_cp, tmp_path, "report", "latency", "--route", "gpt-4o", "-o", "csv"),
        gatectl(analytics_cp, tmp_path, "report", "errors", "--by", "deployment"),
        gatectl(analytics_cp, tmp_path, "report", "top-users", "--limit", "2"))
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["route"], r["p50_ms"], r["p95_ms"], r["ttfb_p50_ms"]) for r in rows] == [("gpt-4o", "250.0", "385.0",
                                                                                          "25.0")] * 3
    code, out, err = errors
    assert code == 0, err
    assert any(line.split()[1:] == ["anthropic-claude", "2", "1", "50.00%"] for line in out.splitlines())
    code, out, err = users
    assert code == 0, err
    assert [line.split() for line in out.splitlines()[1:]] == [["acme", "alice", "9", "9000", "900", "4.50"],
                                                               ["acme", "bob", "3", "3000", "300", "1.50"]]


async def test_nothing_to_show_and_errors(analytics_cp: ControlPlane, tmp_path: Path) -> None:
    empty, bad_since, bad_token = await asyncio.gather(
        gatectl(analytics_cp, tmp_path, "report", "errors", "--since", "2020-01-01", "--until", "2020-01-02"),
        gatectl(analytics_cp, tmp_path, "report", "latency", "--since", "last week"),
        gatectl(analytics_cp, tmp_path, "report", "top-users", token="wrong-token"))
    code, out, err = empty
    assert (code, out) == (0, "") and "No usage since 2020-01-01" in err
    code, out, err = bad_since
    assert code == 3 and "since" in err
    code, out, err = bad_token
    assert code == 3 and "invalid admin token" in err
