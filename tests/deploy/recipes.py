"""The deploy recipes of ``deploy/`` as data, and a way to run their command lines here.

A recipe's command line (a unit's ``ExecStart``, a container's ``args``) is run as written, with only what belongs
to the machine swapped for what belongs to this test: the ``gatectl`` path, the addresses (loopback, free ports),
the state directory and the store (a real etcd of the test).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cli.gatectl_process import Running

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
INSTALLED_GATECTL = "/opt/tollway/.venv/bin/gatectl"
REGIONS = ("eu", "us", "apac")


def venv_tool(name: str) -> str:
    """A console script of the virtualenv running the tests (``gatectl``, ``hadolint``, ...)."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is not installed in the virtualenv; run scripts/setup.sh dev"
    return str(path)


def unit_directives(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of a unit file, continuation lines joined, comments dropped."""
    out: list[tuple[str, str, str]] = []
    section = ""
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def unit_value(path: Path, key: str) -> str:
    values = [v for _, k, v in unit_directives(path) if k == key]
    assert len(values) == 1, f"{path.name}: expected one {key}=, found {values}"
    return values[0]


def exec_start_argv(path: Path, specifiers: Mapping[str, str], environment: Mapping[str, str]) -> list[str]:
    """The unit's ``ExecStart`` as systemd would run it: specifiers (``%i``) and ``${VAR}`` filled in."""
    line = unit_value(path, "ExecStart")
    for spec, value in specifiers.items():
        line = line.replace(spec, value)
    for name, value in environment.items():
        line = line.replace("${" + name + "}", value)
    assert "%" not in line and "${" not in line, f"unfilled specifier or variable in {line!r}"
    return shlex.split(line)


def load_manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every document of ``deploy/kubernetes/*.yaml`` by ``(kind, name)``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                key = (str(doc["kind"]), str(doc["metadata"]["name"]))
                assert key not in out, f"{key} defined twice"
                out[key] = doc
    return out


def only_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's ``port`` (a number or a named container port) as a number."""
    if isinstance(port, int):
        return port
    numbers = [int(p["containerPort"]) for p in container.get("ports") or [] if p.get("name") == port]
    assert numbers, f"no container port named {port!r}"
    return numbers[0]


def replace_option(argv: Sequence[str], option: str, value: str) -> list[str]:
    """``argv`` with the value of ``--option`` replaced; the option must be there (the recipe sets it)."""
    out = list(argv)
    assert option in out, f"{option} not in {argv}"
    out[out.index(option) + 1] = value
    return out


def start(tmp: Path, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Running:
    """``argv`` as a real process in ``tmp``, its output in files there (a chatty server never blocks)."""
    stdout, stderr = tmp / f"{name}.out", tmp / f"{name}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(list(argv), cwd=tmp, env=dict(env), stdout=out, stderr=err)
    return Running(process, stdout, stderr)


def http_get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


def wait_for_status(url: str, status: int, timeout: float = 30.0) -> str:
    """The body of ``url`` once it answers ``status``."""
    deadline = time.monotonic() + timeout
    seen: tuple[int, str] = (0, "not tried")
    while time.monotonic() < deadline:
        seen = http_get(url)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"{url} answered {seen} instead of {status} within {timeout} s")
