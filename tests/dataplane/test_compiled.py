"""The compiled request path (``dataplane/compiled.py``): a fresh interpreter runs the mypyc build while it matches
the sources, and the whole group from source, with one warning naming why, when it does not.

Each test starts a Python process, as a data plane starts: the import hook is installed on ``import dataplane``.
The suite itself runs the compiled group (``scripts/setup.sh dev`` builds it), so every other test exercises it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane.compiled import BUILD, MANIFEST, MODULES, ROOT, usable

PROBE = ("import sys, dataplane.compiled as c, dataplane.core.decide as d, dataplane.api.pipeline as p; "
         "print(c.active(), d.__file__, p.__file__)")


def run(root: Path, probe: str = PROBE, **env: str) -> tuple[str, str]:
    """stdout and stderr of ``probe`` run in ``root`` (its ``dataplane`` and ``tollway``)."""
    base = {k: v for k, v in os.environ.items() if k not in ("TOLLWAY_COMPILED", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, env={**base, **env, "PYTHONPATH": str(root)},
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip(), result.stderr


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the packages and of the checkout's build, to edit."""
    if isinstance(usable(), str):
        pytest.fail(f"the compiled group is not usable ({usable()}): run python -m dataplane.compile")
    for package in ("dataplane", "tollway"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_fresh_interpreter_runs_the_compiled_group() -> None:
    out, err = run(ROOT)
    active, decide, pipeline = out.split()
    assert active == "True" and err == ""
    for path in (decide, pipeline):
        assert Path(path).is_relative_to(BUILD) and path.endswith(".so")


def test_the_value_classes_of_the_group_are_native() -> None:
    # What the request path makes per request (``tests/core/test_values.py``): fields in C slots, no ``__dict__``,
    # and a compiled ``__init__`` rather than the interpreted one ``dataclass`` would generate.
    probe = ("import types, dataplane.core.accounting as a, dataplane.record.usage_batch as s, "
             "dataplane.upstream.adapters as u; "
             "print(*(hasattr(v, '__dict__') or isinstance(type(v).__init__, types.FunctionType) "
             "for v in (a.Usage(1), s.Batch(1, 1, b''), u.Complete(b''))))")
    assert run(ROOT, probe) == ("False False False", "")
    source, _ = run(ROOT, probe, TOLLWAY_COMPILED="0")
    assert source == "True True True"  # from source, plain classes


def test_the_build_covers_every_listed_module() -> None:
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["modules"] == list(MODULES)
    assert sorted(manifest["files"]) == sorted([*MODULES, "tollway_hot__mypyc"])
    assert all((BUILD / rel).is_file() for rel in manifest["files"].values())


def test_an_edited_source_runs_the_whole_group_from_source_with_one_warning(checkout: Path) -> None:
    gate = checkout / "dataplane/core/gate.py"
    gate.write_text(gate.read_text() + "\n# edited\n")
    out, err = run(checkout)
    active, decide, pipeline = out.split()
    assert active == "False"
    # Not only the edited module: every one, so no class is defined twice.
    assert decide == str(checkout / "dataplane/core/decide.py") and pipeline.endswith("dataplane/api/pipeline.py")
    assert err.count("compiled modules are not used") == 1 and "dataplane/core/gate.py changed" in err


@pytest.mark.parametrize(("edit", "why"), [
    ("dataplane/snapshot/runtime.py", "dataplane/snapshot/runtime.py changed"),  # imported by compiled code
    ("tollway/budget_scopes.py", "tollway/budget_scopes.py changed"),
    ("dataplane/core/new_module.py", "dataplane/core/new_module.py appeared"),
])
def test_a_change_outside_the_group_retires_the_build_too(checkout: Path, edit: str, why: str) -> None:
    # Compiled code trusts the types of what it imports, so a module it was built against counts as well.
    path = checkout / edit
    path.write_text((path.read_text() if path.exists() else "") + "\n# edited\n")
    out, err = run(checkout)
    assert out.split()[0] == "False" and f"{why} since the build" in err


def test_a_build_for_another_python_is_not_loaded(checkout: Path) -> None:
    manifest = checkout / "dataplane/_compiled/manifest.json"
    built = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**built, "abi": ".cpython-399-x86_64-linux-gnu.so"}))
    out, err = run(checkout)
    assert out.split()[0] == "False" and "built for .cpython-399" in err


def test_no_build_runs_from_source_quietly(checkout: Path) -> None:
    shutil.rmtree(checkout / "dataplane/_compiled")
    out, err = run(checkout)
    assert out.split()[0] == "False" and err == ""


def test_tollway_compiled_0_runs_from_source(checkout: Path) -> None:
    out, err = run(checkout, TOLLWAY_COMPILED="0")
    assert out.split()[0] == "False" and out.split()[1].endswith("decide.py") and err == ""
    assert run(checkout)[0].split()[0] == "True"  # the same copy, without the variable: compiled


def test_check_says_whether_the_build_is_used(checkout: Path) -> None:
    check = [sys.executable, "-m", "dataplane.compile", "--check"]
    ok = subprocess.run(check, cwd=checkout, capture_output=True, text=True, timeout=60, check=False)
    assert (ok.returncode, ok.stdout.strip()) == (0, "compiled group: usable")
    (checkout / "dataplane/errors.py").write_text((checkout / "dataplane/errors.py").read_text() + "\n")
    stale = subprocess.run(check, cwd=checkout, capture_output=True, text=True, timeout=60, check=False)
    assert stale.returncode == 1 and "dataplane/errors.py changed since the build" in stale.stdout
