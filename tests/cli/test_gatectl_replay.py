"""``gatectl plan --replay`` end to end: traffic sent by this test (the official SDK, through a real data plane,
refusals, a weighted route and a failover included) is recorded in the control plane's usage store (DuckDB, and
a real PostgreSQL), then replayed by the real command (a subprocess) through the current policy (nothing
changes, and every request is decided as recorded) and through an edited one (the exact moves, refusals and
cost this traffic implies). The control plane runs on a real etcd."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam

from controlplane.policy.engine import Document
from controlplane.policy.repository import Repository
from controlplane.server import ControlPlane
from controlplane.store.base import Store
from tests.cli.gatectl_process import ROOT, base_env, gatectl
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import DataPlaneFactory, eventually, running_control_plane

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "what is the answer?"}]
# Pico-dollars per token (= USD per million tokens x 1e6): (input, output).
PRICES = {"big": (5_000_000, 15_000_000), "small": (150_000, 600_000)}
RECORDED = 26


def policy(*, proposed: bool = False) -> list[dict[str, Any]]:
    """The applied policy, or the proposal: route chat served by the cheap deployment, tenant ci limited to 2
    requests a minute, tenant docs allowed route chat only, and route failover backed by big instead of small
    (its first deployment, broken, is down: requests that failed over from it stay away from it)."""
    ci: dict[str, Any] = {"rateLimits": {"requestsPerMinute": 2}} if proposed else {}
    docs: dict[str, Any] = {"routes": ["chat"]} if proposed else {}
    return [provider("dear-eu", "eu", type_="mock"), provider("cheap-eu", "eu", type_="mock"),
            provider("down-eu", "eu"),  # OpenAI's API at 127.0.0.1:1, where nothing listens
            model("big", "dear-eu", inp="5", out="15"), model("small", "cheap-eu", inp="0.15", out="0.60"),
            model("broken", "down-eu", inp="0.15", out="0.60"),
            route("chat", "small" if proposed else "big"), route("fast", "small"),
            route("mixed", "big", "small", strategy="weighted", weights=[1, 1]),
            route("failover", "broken", "big" if proposed else "small", strategy="priority"),
            tenant("search", "eu"), tenant("ci", "eu", **ci), tenant("docs", "eu", **docs)]


def write(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "policy.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


async def stored(cp: ControlPlane) -> int:
    rows = await cp.usage_db.fetch("SELECT (SELECT count(*) FROM usage_events) + (SELECT count(*) FROM refusals)")
    return int(rows[0][0])


async def served_costs(cp: ControlPlane) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(tenant, route) -> the (cost on big, cost on small) of each served request, oldest first, from the tokens
    the data plane recorded."""
    rows = await cp.usage_db.fetch(
        "SELECT tenant, route, input_tokens, output_tokens, cached_input_tokens + cache_write_tokens "
        "+ reasoning_tokens FROM usage_events ORDER BY ts, sequence, ordinal")
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for tenant_name, route_name, inp, out_tokens, other in rows:
        assert int(other) == 0  # the mock bills plain input and output only
        costs = tuple(int(inp) * PRICES[d][0] + int(out_tokens) * PRICES[d][1] for d in ("big", "small"))
        out.setdefault((str(tenant_name), str(route_name)), []).append((costs[0], costs[1]))
    return out


async def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the control plane serving the command runs on this test's event loop.
    return await asyncio.to_thread(gatectl, "plan", *args, "--replay", "1h", env=env, timeout=120)


def on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``gatectl plan ARGS --replay 1h`` with stderr on a pseudo-terminal (stdout piped, as ``> file``): exit
    status, stdout, and what the terminal showed."""
    main, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "plan", *args, "--replay", "1h"], cwd=ROOT,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the command closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = process.communicate(timeout=120)
    reader.join(10)
    os.close(main)
    return process.returncode, stdout.decode(), shown.decode(errors="replace")


async def send_traffic(dp_url: str, secrets: dict[str, str]) -> None:
    """26 requests: 23 served (6 chat, 6 mixed and 3 failover of search; 5 chat of ci; 3 fast of docs) and 3
    refused by policy (ci's 6th request in the minute, 2 on a route its key may not use)."""
    def client(name: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{dp_url}/v1", api_key=secrets[name], max_retries=0)

    search, ci, docs = client("search"), client("ci"), client("docs")
    for _ in range(6):
        await search.chat.completions.create(model="chat", messages=CHAT, max_tokens=20)
    for _ in range(6):
        await search.chat.completions.create(model="mixed", messages=CHAT, max_tokens=20)
    for _ in range(3):  # served by small, after broken failed (or once it is ejected)
        answer = await search.chat.completions.with_raw_response.create(model="failover", messages=CHAT)
        assert answer.headers["x-tollway-deployment"] == "small"
    for _ in range(5):
        await ci.chat.completions.create(model="chat", messages=CHAT)
    with pytest.raises(openai.RateLimitError):  # the key's 6th request in the minute
        await ci.chat.completions.create(model="chat", messages=CHAT)
    for _ in range(2):
        with pytest.raises(openai.PermissionDeniedError):  # the key may use route chat only
            await ci.chat.completions.create(model="fast", messages=CHAT)
    for _ in range(3):
        await docs.chat.completions.create(model="fast", messages=CHAT)


@pytest.mark.parametrize("usage_store", ["duckdb", "postgresql"])
async def test_plan_replay_reports_the_moves_and_refusals_of_the_recorded_traffic(
        usage_store: str, request: pytest.FixtureRequest, etcd_store: Store, tmp_path: Path,
        data_plane_factory: DataPlaneFactory) -> None:
    store_url = request.getfixturevalue("postgres_url") if usage_store == "postgresql" else None
    repo = Repository(etcd_store)
    await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(policy())], who="test")
    async with running_control_plane(etcd_store, tmp_path / "cp", usage_store_url=store_url) as cp:
        secrets = {
            "search": (await repo.create_key("search-app", "search", who="test")).secret,
            "ci": (await repo.create_key("ci-bot", "ci", who="test", routes=["chat"],
                                         rate_limits={"requestsPerMinute": 5})).secret,
            "docs": (await repo.create_key("docs-app", "docs", who="test")).secret,
        }
        dp = await data_plane_factory(cp.grpc_target)
        await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 3  # type: ignore[union-attr]
                         , what="snapshot with the three keys")
        await send_traffic(dp.url, secrets)
        deadline = time.monotonic() + 15
        while await stored(cp) < RECORDED and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await stored(cp) == RECORDED  # 23 served, 3 refused by policy: every decision recorded
        costs = await served_costs(cp)

        env = base_env(tmp_path) | {"TOLLWAY_CONTROL_PLANE": cp.admin_url, "TOLLWAY_ADMIN_TOKEN": cp.admin_token}
        current = write(tmp_path / "current", policy())
        same = await replay(env, "-f", str(current), "-o", "json", "--fail-on", "refusals>0")
        assert same.returncode == 0, same.stderr
        report = json.loads(same.stdout)["replay"]
        assert report["requests"] == RECORDED
        # The current policy's replay decides every request as the data plane did: the routes (the weighted
        # draws and the failovers included) and the refusals.
        assert report["reproduced"] == {"requests": RECORDED, "matching": RECORDED, "mismatches": []}
        assert report["changes"] == {"refused": 0, "allowed": 0, "moved": 0}
        assert report["cost"]["deltaPico"] == 0
        # What it costs at the current prices is what the data plane charged, request by request.
        charged = await cp.usage_db.fetch("SELECT sum(cost_pico) FROM usage_events")
        assert report["cost"]["currentPico"] == int(charged[0][0]) > 0

        proposed = write(tmp_path / "proposed", policy(proposed=True))
        changed = await replay(env, "-f", str(proposed), "-o", "json")
        assert changed.returncode == 1, changed.stderr
        assert "\r" not in changed.stderr and "replaying" not in changed.stderr  # no terminal: no progress line
        report = json.loads(changed.stdout)["replay"]
        # ci: of its 5 requests served in one burst, 2 fit the tenant's new bucket; docs: route fast is gone;
        # failover: what failed over from broken still does, to big now.
        assert report["changes"] == {"refused": 6, "allowed": 0, "moved": 11}
        assert [(r["tenant"], r["key"], r["reason"], r["requests"]) for r in report["refused"]] == [
            ("ci", "ci-bot", "rate limit", 3), ("docs", "docs-app", "route not allowed", 3)]
        search_chat, ci_chat, failover = costs[("search", "chat")], costs[("ci", "chat")], costs[("search", "failover")]
        assert [(m["tenant"], m["from"], m["to"], m["fromProvider"], m["toProvider"], m["requests"],
                 m["costDeltaPico"]) for m in report["moved"]] == [
            ("search", "big", "small", "dear-eu", "cheap-eu", 6, sum(s - b for b, s in search_chat)),
            ("search", "small", "big", "cheap-eu", "dear-eu", 3, sum(b - s for b, s in failover)),
            ("ci", "big", "small", "dear-eu", "cheap-eu", 2, sum(s - b for b, s in ci_chat[:2]))]
        refused_cost = sum(b for b, _ in ci_chat[2:]) + sum(s for _, s in costs[("docs", "fast")])
        assert report["cost"]["deltaPico"] == sum(m["costDeltaPico"] for m in report["moved"]) - refused_cost < 0

        failing = await replay(env, "-f", str(proposed), "--fail-on", "refusals>0")
        assert failing.returncode == 5, failing.stderr
        assert "--fail-on holds: refusals=6 (>0)" in failing.stderr
        assert "Would now be refused:" in failing.stdout and "ci-bot" in failing.stdout
        assert "route not allowed" in failing.stdout and "big (dear-eu)" in failing.stdout

        markdown = await replay(env, "-f", str(proposed), "-o", "markdown")
        assert markdown.returncode == 1, markdown.stderr
        assert "### Replay of recorded traffic" in markdown.stdout
        assert "| search | big (dear-eu) | small (cheap-eu) | 6 |" in markdown.stdout
        assert "| docs | docs-app | route not allowed | 3 |" in markdown.stdout

        # On a terminal: a progress bar on stderr, and stdout still nothing but the JSON.
        status, stdout, shown = await asyncio.to_thread(on_a_terminal, env, "-f", str(proposed), "-o", "json")
        assert status == 1, shown
        assert json.loads(stdout)["replay"]["changes"] == report["changes"]
        assert f"replaying [{'#' * 30}] 100% {RECORDED}/{RECORDED} requests" in shown

        bad = await replay(env, "-f", str(proposed), "--fail-on", "refusal>0")
        assert bad.returncode == 2 and "--fail-on" in bad.stderr
