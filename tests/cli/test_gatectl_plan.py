"""``gatectl plan`` end to end: the real command as a subprocess against a real control plane process (embedded
store), planning an edited copy of ``policies/`` after applying the original."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.gatectl_process import gatectl


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_plan_shows_per_region_what_data_planes_would_receive(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    clean = gatectl("plan", "-f", str(policies), env=env)
    assert clean.returncode == 0, clean.stderr
    lines = clean.stdout.splitlines()
    assert lines[0].startswith("region eu: no changes (snapshot ")
    assert lines[-1] == "Plan: 0 of 2 regions change: 0 to add, 0 to change, 0 to remove."
    assert "plan: 0 of 2 regions change" in clean.stderr

    edit(policies / "models.yaml", 'inputPerMillion: "2.75"', 'inputPerMillion: "0.05"')  # gpt-4o-eu
    cheaper = gatectl("plan", "-f", str(policies), env=env)
    assert cheaper.returncode == 1, cheaper.stderr
    for block in cheaper.stdout.split("\n\n")[:2]:  # both regions: search may use eu and us deployments
        assert "  ~ tenant search\n      ~ routes.chat-smart: gpt-4o-us, gpt-4o-eu, claude-sonnet-us → gpt-4o-eu, " \
               "gpt-4o-us, claude-sonnet-us\n" in block
        assert "  ~ deployment gpt-4o-eu\n      ~ prices.input: $2.75/1M tokens → $0.05/1M tokens\n" in block

    edit(policies / "tenants" / "search.yaml", "regions: [us, eu]", "regions: [eu]")
    edit(policies / "tenants" / "search.yaml", 'monthlyUsd: "10000"', 'monthlyUsd: "12500"')
    changed = gatectl("plan", "-f", str(policies), env=env)
    assert changed.returncode == 1, changed.stderr
    eu, us = changed.stdout.split("\n\nregion us: ")
    eu_lines = eu.splitlines()
    assert eu_lines[0].startswith("region eu: snapshot ") and " → " in eu_lines[0]
    assert "  ~ tenant search" in eu_lines
    assert "      ~ regions: eu, us → eu" in eu_lines
    assert any(line.startswith("      ~ providers: anthropic-us (us), azure-eu (eu)") and
               line.endswith("→ azure-eu (eu), bedrock-eu (eu), vertex-eu (eu), vllm-eu (eu)") for line in eu_lines)
    assert "      ~ routes.chat-smart: gpt-4o-us, gpt-4o-eu, claude-sonnet-us → gpt-4o-eu" in eu_lines
    assert "      ~ budget.monthlyMicros: $10,000 → $12,500" in eu_lines
    assert "  - provider openai-us" in eu_lines  # no tenant of eu may send data to us providers any more
    assert "  - tenant search" in us.splitlines()
    assert changed.stdout.splitlines()[-1].startswith("Plan: 2 of 2 regions change: ")

    as_json = gatectl("plan", "-f", str(policies), "-o", "json", env=env)
    assert as_json.returncode == 1, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["changed"] is True
    assert {(r["op"], r["kind"], r["name"]) for r in answer["resources"]} == {
        ("update", "Tenant", "search"), ("update", "Model", "gpt-4o-eu")}
    by_region = {r["region"]: r for r in answer["regions"]}
    search = [c for c in by_region["eu"]["changes"] if (c["kind"], c["name"]) == ("tenant", "search")]
    assert {"field": "regions", "old": ["eu", "us"], "new": ["eu"]} in search[0]["fields"]
    assert {"field": "budget.monthlyMicros", "old": 10_000_000_000, "new": 12_500_000_000} in search[0]["fields"]

    history = json.loads(gatectl("history", "-o", "json", env=env).stdout)["items"]
    assert len(history) == 1  # planning wrote nothing
    assert gatectl("diff", "-f", str(policies), env=env).returncode == 1


def test_plan_refuses_invalid_policy_like_diff(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    tenant = policies / "tenants" / "search.yaml"
    edit(tenant, "regions: [us, eu]", "regions: [us, EU!]")
    local = gatectl("plan", "-f", str(policies), env=env)
    assert (local.returncode, local.stdout) == (2, "")
    assert f"{tenant}: document 1 (Tenant/search): spec.regions[1]: " in local.stderr

    edit(tenant, "EU!", "eu")
    routes = policies / "routes.yaml"
    edit(routes, "[gpt-4o-eu, gpt-4o-us, claude-sonnet-us]", "[gpt-4o-eu, gpt-5-eu, claude-sonnet-us]")
    remote = gatectl("plan", "-f", str(policies), env=env)
    assert (remote.returncode, remote.stdout) == (3, "")
    assert f"{routes}: document 2 (Route/chat-smart): spec.models[1]: " in remote.stderr
    assert "gpt-5-eu" in remote.stderr and "Traceback" not in remote.stderr
