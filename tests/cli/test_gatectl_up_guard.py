"""``gatectl apply -f policies/`` against a ``gatectl up`` gateway: refused with a hint, as it would swap the mock
providers ``up`` runs for the real ones (which need credentials and the internet), unless ``--real-providers``."""

from __future__ import annotations

import json
from pathlib import Path

from cli.stand_ins import STAND_IN_LABEL
from tests.cli.gatectl_process import ROOT, base_env, gatectl
from tests.cli.test_gatectl_up import start_up

EXPORT = r"export TOLLWAY_CONTROL_PLANE=(\S+) TOLLWAY_ADMIN_TOKEN=(\S+)\n"


def provider_types(admin: dict[str, str]) -> dict[str, str]:
    listed = gatectl("get", "providers", "-o", "json", env=admin)
    assert listed.returncode == 0, listed.stderr
    return {p["metadata"]["name"]: p["spec"]["type"] for p in json.loads(listed.stdout)["items"]}


def test_apply_of_real_providers_to_a_gatectl_up_gateway_is_refused_unless_confirmed(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    up = start_up(tmp_path, "up", env)
    try:
        export = up.wait_for(EXPORT, stream="stdout")
        admin = env | {"TOLLWAY_CONTROL_PLANE": export.group(1), "TOLLWAY_ADMIN_TOKEN": export.group(2)}
        mocks = provider_types(admin)
        assert mocks and set(mocks.values()) == {"mock"}
        listed = json.loads(gatectl("get", "providers", "openai-us", "-o", "json", env=admin).stdout)
        assert listed["metadata"]["labels"] == {STAND_IN_LABEL: "openai"}  # the type it stands in for

        refused = gatectl("apply", "-f", str(ROOT / "policies"), env=admin)
        assert refused.returncode == 2, refused.stderr
        errors = refused.stderr.splitlines()
        assert any("providers.yaml: document 1 (Provider/openai-us): spec.type: 'openai' would replace the mock "
                   "provider" in line for line in errors), refused.stderr
        assert sum("would replace the mock provider" in line for line in errors) == len(mocks)
        assert any(line.startswith("hint: this gateway was started by `gatectl up`") and "--real-providers" in line
                   for line in errors), refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert provider_types(admin) == mocks  # nothing was applied

        # Policy without Providers goes through as ever; a dry run only warns.
        routes = gatectl("apply", "-f", str(ROOT / "policies" / "routes.yaml"), env=admin)
        assert routes.returncode == 0, routes.stderr
        dry = gatectl("apply", "-f", str(ROOT / "policies"), "--dry-run", env=admin)
        assert dry.returncode == 0, dry.stderr
        assert "warning: " in dry.stderr and "Provider/openai-us configured (dry run)" in dry.stdout
        assert provider_types(admin) == mocks

        confirmed = gatectl("apply", "-f", str(ROOT / "policies"), "--real-providers", env=admin)
        assert confirmed.returncode == 0, confirmed.stderr
        assert "Provider/openai-us configured" in confirmed.stdout
        swapped = provider_types(admin)
        assert swapped["openai-us"] == "openai" and "mock" not in swapped.values()
        # Once real, there is nothing left to guard: a plain apply goes through.
        again = gatectl("apply", "-f", str(ROOT / "policies"), env=admin)
        assert again.returncode == 0, again.stderr
    finally:
        assert up.interrupt() == 0, up.stderr.read_text()
