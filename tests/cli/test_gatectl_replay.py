"""``gatectl plan --replay`` end to end: traffic sent by this test (the official SDK, through a real data plane,
refusals included) is recorded in the control plane's usage store, then replayed by the real command (a
subprocess) through the current policy (nothing changes, and every request is decided as recorded) and through
an edited one (the exact moves and refusals this traffic implies)."""

from __future__ import annotations

import asyncio
import json
import subprocess
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
from controlplane.store.embedded import EmbeddedStore
from tests.cli.gatectl_process import base_env, gatectl
from tests.core.policy_docs import model, provider, route, tenant
from tests.discovery.conftest import DataPlaneFactory, eventually, running_control_plane

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "what is the answer?"}]


def policy(*, proposed: bool = False) -> list[dict[str, Any]]:
    """The applied policy, or the proposal: route chat served by the cheap deployment, tenant ci limited to 2
    requests a minute, tenant docs allowed route chat only."""
    ci: dict[str, Any] = {"rateLimits": {"requestsPerMinute": 2}} if proposed else {}
    docs: dict[str, Any] = {"routes": ["chat"]} if proposed else {}
    return [provider("dear-eu", "eu", type_="mock"), provider("cheap-eu", "eu", type_="mock"),
            model("big", "dear-eu", inp="5", out="15"), model("small", "cheap-eu", inp="0.15", out="0.60"),
            route("chat", "small" if proposed else "big"), route("fast", "small"),
            tenant("search", "eu"), tenant("ci", "eu", **ci), tenant("docs", "eu", **docs)]


def write(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "policy.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


async def stored(cp: ControlPlane) -> int:
    rows = await cp.usage_db.fetch("SELECT (SELECT count(*) FROM usage_events) + (SELECT count(*) FROM refusals)")
    return int(rows[0][0])


async def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the control plane serving the command runs on this test's event loop.
    return await asyncio.to_thread(gatectl, "plan", *args, "--replay", "1h", env=env, timeout=120)


async def test_plan_replay_reports_the_moves_and_refusals_of_the_recorded_traffic(
        tmp_path: Path, data_plane_factory: DataPlaneFactory) -> None:
    store = await EmbeddedStore.open(str(tmp_path / "store"))
    try:
        repo = Repository(store)
        await repo.apply([Document(f"test#{i}", d) for i, d in enumerate(policy())], who="test")
        async with running_control_plane(store, tmp_path / "cp") as cp:
            search = await repo.create_key("search-app", "search", who="test")
            ci = await repo.create_key("ci-bot", "ci", who="test", routes=["chat"],
                                       rate_limits={"requestsPerMinute": 5})
            docs = await repo.create_key("docs-app", "docs", who="test")
            dp = await data_plane_factory(cp.grpc_target)
            await eventually(lambda: dp.is_ready and len(dp.holder.runtime.keys) == 3  # type: ignore[union-attr]
                             , what="snapshot with the three keys")
            search_client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=search.secret, max_retries=0)
            ci_client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=ci.secret, max_retries=0)
            for _ in range(6):
                await search_client.chat.completions.create(model="chat", messages=CHAT, max_tokens=20)
            for _ in range(5):
                await ci_client.chat.completions.create(model="chat", messages=CHAT)
            with pytest.raises(openai.RateLimitError):  # the key's 6th request in the minute
                await ci_client.chat.completions.create(model="chat", messages=CHAT)
            for _ in range(2):
                with pytest.raises(openai.PermissionDeniedError):  # the key may use route chat only
                    await ci_client.chat.completions.create(model="fast", messages=CHAT)
            docs_client = openai.AsyncOpenAI(base_url=f"{dp.url}/v1", api_key=docs.secret, max_retries=0)
            for _ in range(3):
                await docs_client.chat.completions.create(model="fast", messages=CHAT)
            deadline = time.monotonic() + 15
            while await stored(cp) < 17 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await stored(cp) == 17  # 14 served, 3 refused by policy: every decision recorded

            env = base_env(tmp_path) | {"TOLLWAY_CONTROL_PLANE": cp.admin_url, "TOLLWAY_ADMIN_TOKEN": cp.admin_token}
            current = write(tmp_path / "current", policy())
            same = await replay(env, "-f", str(current), "-o", "json", "--fail-on", "refusals>0")
            assert same.returncode == 0, same.stderr
            report = json.loads(same.stdout)["replay"]
            assert report["requests"] == 17
            # The current policy's replay decides every request as the data plane did (routes and refusals).
            assert report["reproduced"]["matching"] == 17, report["reproduced"]
            assert report["changes"] == {"refused": 0, "allowed": 0, "moved": 0}
            assert report["cost"]["deltaPico"] == 0

            proposed = write(tmp_path / "proposed", policy(proposed=True))
            changed = await replay(env, "-f", str(proposed), "-o", "json")
            assert changed.returncode == 1, changed.stderr
            report = json.loads(changed.stdout)["replay"]
            # ci: of its 5 requests served in one burst, 2 fit the tenant's new bucket; docs: route fast is gone.
            assert report["changes"] == {"refused": 6, "allowed": 0, "moved": 8}
            assert [(r["tenant"], r["key"], r["reason"], r["requests"]) for r in report["refused"]] == [
                ("ci", "ci-bot", "rate limit", 3), ("docs", "docs-app", "route not allowed", 3)]
            assert [(m["tenant"], m["from"], m["to"], m["fromProvider"], m["toProvider"], m["requests"])
                    for m in report["moved"]] == [("search", "big", "small", "dear-eu", "cheap-eu", 6),
                                                   ("ci", "big", "small", "dear-eu", "cheap-eu", 2)]
            assert all(m["costDeltaPico"] < 0 for m in report["moved"]) and report["cost"]["deltaPico"] < 0

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

            bad = await replay(env, "-f", str(proposed), "--fail-on", "refusal>0")
            assert bad.returncode == 2 and "--fail-on" in bad.stderr
    finally:
        await store.close()
