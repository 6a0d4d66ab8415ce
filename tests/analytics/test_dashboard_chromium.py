"""The dashboard in a real headless Chromium: sign in with ``?token=``, then read the page the browser rendered.

Chromium runs as a subprocess (``--dump-dom`` for the DOM, ``--screenshot`` for a PNG a person can look at) with a
fresh profile per test, against a real control plane on loopback. Without Chromium the tests are skipped, unless
``CI=true``: there the test script installs it and they must run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from controlplane.server import ControlPlane
from tests.analytics.conftest import ADMIN_TOKEN, today

TIMEOUT_SECONDS = 60.0


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed (apt-get install -y chromium); CI must run the browser tests")
    pytest.skip("chromium is not installed (apt-get install -y chromium); skipping the browser tests")


async def browse(profile: Path, *args: str) -> str:
    """Run headless Chromium on ``profile`` and return its stdout (the DOM for ``--dump-dom``)."""
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"chromium did not finish within {TIMEOUT_SECONDS} s")
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def section(dom: str, section_id: str) -> str:
    """One ``<section>`` of the page (charts of other sections carry the same series names)."""
    found = re.search(rf'<section id="{section_id}"[^>]*>.*?</section>', dom, re.S)
    assert found, section_id
    return found.group(0)


def marks(dom: str, element: str, series: str) -> dict[str, float]:
    """day -> value of the chart marks (``rect``/``circle``) of one series, as the browser kept them."""
    found: dict[str, float] = {}
    for tag in re.findall(rf"<{element}\b[^>]*>", dom):
        if f'data-series="{series}"' in tag:
            day = re.search(r'data-day="([^"]+)"', tag)
            value = re.search(r'data-value="([^"]+)"', tag)
            assert day and value, tag
            found[day.group(1)] = float(value.group(1))
    return found


async def test_signed_in_browser_sees_cost_latency_errors_and_top_users(
        analytics_cp: ControlPlane, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    dom = await browse(profile, "--dump-dom", f"{analytics_cp.admin_url}/dashboard?token={ADMIN_TOKEN}")
    assert ADMIN_TOKEN not in dom
    d0, d1, d2 = ((today() - timedelta(days=2 - d)).date().isoformat() for d in range(3))

    # Cost over time per team: one stacked bar segment per tenant and day, in micro-dollars.
    cost = section(dom, "cost")
    assert marks(cost, "rect", "acme") == {d0: 1_000_000, d1: 2_000_000, d2: 3_000_000}
    assert marks(cost, "rect", "globex") == {d0: 1_000_000, d1: 1_000_000, d2: 1_000_000}
    assert f"<title>acme {d2}: $3.00</title>" in dom  # the tooltip (and the axis) in dollars, not micro-dollars
    # Latency trends: p50 and p95 lines per model.
    assert marks(dom, "circle", "gpt-4o p50") == {d0: 250, d1: 250, d2: 250}
    assert marks(dom, "circle", "gpt-4o p95") == {d0: 385, d1: 385, d2: 385}
    assert re.search(r'<polyline[^>]*stroke-dasharray[^>]*data-series="gpt-4o p95"', dom)
    # Error rates per provider, in percent.
    assert marks(dom, "circle", "anthropic") == {d0: 0, d1: 0, d2: 50}
    assert marks(dom, "circle", "openai") == {d0: 0, d1: 0, d2: 0}
    # Numbers a person reads.
    assert re.search(r'id="total-cost">\$9\.00<', dom)
    assert re.search(r'id="total-requests">18<', dom)
    assert re.search(r'id="total-error-rate">5\.56%<', dom)
    users = re.search(r'<table id="top-users">.*?</table>', dom, re.S)
    assert users
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", users.group(0))
    assert cells[:6] == ["acme", "alice", "9", "9,000", "900", "$4.50"]
    assert "carol" in cells
    # Tokens of each kind per model: the amounts, and the figure of each model's mix.
    tokens = re.search(r'<table id="token-kinds">.*?</table>', dom, re.S)
    assert tokens
    assert re.findall(r"<td[^>]*>([^<]*)</td>", tokens.group(0)) == [
        "gpt-4o", "12", "12,000", "3,000", "0", "1,200", "0", "$6.00",
        "claude", "6", "12,000", "7,200", "2,400", "1,200", "300", "$3.00"]
    shares = {(g, k): float(v) for g, k, v in re.findall(
        r'<rect\b[^>]*data-group="([^"]+)" data-series="([^"]+)" data-value="([^"]+)"', dom)}
    assert shares == {
        ("gpt-4o", "uncached input"): 9_000, ("gpt-4o", "cache read"): 3_000,
        ("gpt-4o", "non-reasoning output"): 1_200,
        ("claude", "uncached input"): 2_400, ("claude", "cache read"): 7_200, ("claude", "cache write"): 2_400,
        ("claude", "non-reasoning output"): 900, ("claude", "reasoning"): 300}

    # The session cookie alone (no token in the URL) opens the dashboard again in the same profile.
    again = await browse(profile, "--dump-dom", f"{analytics_cp.admin_url}/dashboard?cost_by=tag")
    assert marks(section(again, "cost"), "rect", "chat") == {d0: 1_000_000, d1: 2_000_000, d2: 3_000_000}


async def test_a_browser_without_a_session_sees_only_the_login_form(
        analytics_cp: ControlPlane, tmp_path: Path) -> None:
    dom = await browse(tmp_path / "profile", "--dump-dom", f"{analytics_cp.admin_url}/dashboard")
    assert 'type="password"' in dom and 'name="token"' in dom
    assert "<svg" not in dom and "alice" not in dom


async def test_screenshot_of_the_dashboard(analytics_cp: ControlPlane, tmp_path: Path) -> None:
    """A PNG of the rendered page (kept in tmp_path for a person to look at) of a plausible size."""
    shot = tmp_path / "dashboard.png"
    await browse(tmp_path / "profile", "--window-size=1400,1200", f"--screenshot={shot}",
                 f"{analytics_cp.admin_url}/dashboard?token={ADMIN_TOKEN}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 1200)
    assert len(data) > 50_000  # charts and tables (~90 kB), not a blank or login page (~22 kB)
