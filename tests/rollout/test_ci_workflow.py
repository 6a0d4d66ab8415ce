"""The example CI workflow (``deploy/ci/github-actions.yml``, shown in the README): valid GitHub Actions, every
``gatectl`` command in it a real command with real options, and its jobs' steps, run as GitHub would run them
(bash, ``$GITHUB_OUTPUT``, the steps' outputs), doing what they say against a real control plane with a data plane
in the canary region: the plan job plans with a replay and passes, the apply job starts the staged rollout."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from controlplane.server import ControlPlane
from controlplane.store.open import open_store
from tests.cli.gatectl_process import ROOT, base_env, gatectl
from tests.discovery.conftest import ADMIN_TOKEN, dp_settings, eventually, running_control_plane, running_data_plane

WORKFLOW = ROOT / "deploy" / "ci" / "github-actions.yml"
OPERATORS = {"||", "&&", "|", ";", ">", ">>", "<", "&", "(", ")"}
EXTERNAL = ("pip install", "gh pr comment")  # what the runner has and this machine need not run


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


def gatectl_commands(script: str) -> list[list[str]]:
    """Every ``gatectl ...`` command line of a shell script, as its words (up to the next shell operator)."""
    commands: list[list[str]] = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in OPERATORS:
                if current and current[0] == "gatectl":
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def all_commands() -> list[list[str]]:
    return [command for job in workflow()["jobs"] for step in steps(job) for command in gatectl_commands(
        step.get("run", ""))]


def test_the_workflow_is_valid_github_actions() -> None:
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                              "vendor.github-workflows", str(WORKFLOW)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    on: dict[str, Any] = workflow().get("on") or workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert set(on) == {"pull_request", "push"} and on["push"]["branches"] == ["main"]
    jobs = workflow()["jobs"]
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["apply"]["if"] == "github.event_name == 'push'"


def test_the_readme_shows_the_workflow_as_shipped() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert WORKFLOW.read_text() in blocks


def test_every_gatectl_command_is_real_with_real_options(tmp_path: Path) -> None:
    commands = all_commands()
    assert [c[:2] for c in commands] == [["gatectl", "plan"], ["gatectl", "apply"], ["gatectl", "rollout"]]
    for command in commands:
        words = list(command[1:])
        sub = []
        while words and not words[0].startswith("-"):
            sub.append(words.pop(0))
        shown = gatectl(*sub, "--help", env=base_env(tmp_path))
        assert shown.returncode == 0, (sub, shown.stderr)
        for option in (w.split("=", 1)[0] for w in words if w.startswith("-")):
            assert re.search(rf"(^|[\s,]){re.escape(option)}([\s,=]|$)", shown.stdout, flags=re.M), \
                f"gatectl {' '.join(sub)} has no option {option}"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A control plane on the embedded store, and a data plane of the canary region connected to it."""
    store = await open_store(f"embedded://{tmp_path / 'store'}")
    try:
        async with running_control_plane(store, tmp_path / "cp") as cp, running_data_plane(
                dp_settings(cp.grpc_target, tmp_path / "dp", node_id="dp-eu-1", region="eu")):
            await eventually(lambda: "eu" in cp.publisher.regions(), within=10, what="the data plane connected")
            yield cp
    finally:
        await store.close()


def run_step(step: dict[str, Any], workdir: Path, env: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    """Run one ``run:`` step as GitHub does (``bash -e``, the step's outputs through ``$GITHUB_OUTPUT``)."""
    script = re.sub(r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)\s*\}\}", lambda m: outputs[m[1]][m[2]], step["run"])
    assert "${{" not in script, script
    output = workdir / "github-output"
    output.write_text("")
    done = subprocess.run(["bash", "-e", "-c", script], cwd=workdir, env={**env, "GITHUB_OUTPUT": str(output)},
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{step.get('name', script)}: {done.stdout}{done.stderr}"
    if "id" in step:
        outputs[step["id"]] = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return done.stdout


async def test_the_jobs_plan_then_start_the_staged_rollout(fleet: ControlPlane, tmp_path: Path) -> None:
    workdir = tmp_path / "checkout"
    shutil.copytree(ROOT / "policies", workdir / "policies")
    venv_bin = str(Path(sys.executable).parent)  # where the setup step put gatectl
    assert shutil.which("gatectl", path=venv_bin)
    env = {**base_env(tmp_path), "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "TOLLWAY_CONTROL_PLANE": fleet.admin_url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN, "GITHUB_ACTOR": "octocat"}
    for job in ("plan", "apply"):
        outputs: dict[str, dict[str, str]] = {}
        for step in steps(job):
            if "run" in step and not step["run"].startswith(EXTERNAL):
                printed = await asyncio.to_thread(run_step, step, workdir, env, outputs)
                if "rollout status" in step["run"]:
                    assert "rollout rollout-1: revision 1 on the canary (region eu)" in printed
        if job == "plan":
            assert outputs["plan"]["status"] == "1"  # changes, and no recorded request refused
            plan = (workdir / "plan.md").read_text()
            assert plan.startswith("### Plan") and "region eu" in plan

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{fleet.admin_url}/admin/v1/rollout") as resp:
            rollout = (await resp.json())["rollout"]
        async with session.get(f"{fleet.admin_url}/admin/v1/history") as resp:
            entry = (await resp.json())["items"][0]
    assert rollout["canary"] == {"regions": ["eu"], "dataplanes": []} and rollout["who"] == "octocat"
    assert rollout["abortIfErrorRateAbove"] == 0.02
    assert rollout["promoteAt"] == pytest.approx(rollout["startedAt"] + 30 * 60)
    assert (entry["action"], entry["who"]) == ("rollout-start", "octocat")
