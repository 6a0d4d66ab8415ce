"""gatectl end to end: the real command as a subprocess against a real control plane process (embedded store)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.gatectl_process import ROOT, base_env, gatectl, start_gatectl
from tollway.keyformat import is_well_formed

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A running control plane; the environment that points gatectl at it. Stopped with Ctrl-C, which must work."""
    server_env = base_env(tmp_path)
    cp = start_gatectl(tmp_path, "controlplane", "controlplane", "serve", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "cp"), "--admin-token", ADMIN_TOKEN, env=server_env)
    url = cp.wait_for(r"control plane ready: admin API (http://\S+?),").group(1)
    yield server_env | {"TOLLWAY_CONTROL_PLANE": url, "TOLLWAY_ADMIN_TOKEN": ADMIN_TOKEN, "USER": "tester"}
    assert cp.interrupt() == 0, cp.stderr.read_text()


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the example policy, to edit."""
    return Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))


def history(env: dict[str, str]) -> list[dict[str, object]]:
    result = gatectl("history", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, object]] = json.loads(result.stdout)["items"]
    return items


def test_apply_then_diff_clean_then_change_shows(env: dict[str, str], policies: Path) -> None:
    applied = gatectl("apply", "-f", str(policies), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "Tenant/search created" in applied.stdout.splitlines()
    assert "Route/chat-fast created" in applied.stdout.splitlines()

    clean = gatectl("diff", "-f", str(policies), env=env)
    assert (clean.returncode, clean.stdout) == (0, ""), clean.stderr

    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text().replace("attempts: 3", "attempts: 5"))
    changed = gatectl("diff", "-f", str(policies), env=env)
    assert changed.returncode == 1, changed.stderr
    assert "Route/chat-fast" in changed.stdout
    assert '-      "attempts": 3' in changed.stdout and '+      "attempts": 5' in changed.stdout

    dry = gatectl("apply", "-f", str(routes), "--dry-run", env=env)
    assert "Route/chat-fast configured (dry run)" in dry.stdout.splitlines()
    assert gatectl("diff", "-f", str(policies), env=env).returncode == 1  # the dry run wrote nothing

    reapplied = gatectl("apply", "-f", str(routes), env=env)
    assert reapplied.returncode == 0
    assert "Route/chat-fast configured" in reapplied.stdout.splitlines()
    assert "Route/chat-smart unchanged" in reapplied.stdout.splitlines()
    assert gatectl("diff", "-f", str(policies), env=env).returncode == 0


def test_invalid_documents_are_refused_and_nothing_is_written(env: dict[str, str], policies: Path) -> None:
    tenant = policies / "tenants" / "search.yaml"
    tenant.write_text(tenant.read_text().replace("regions: [us, eu]", "regions: [us, EU!]"))
    local = gatectl("apply", "-f", str(policies), env=env)
    assert local.returncode == 2
    assert f"{tenant}: document 1 (Tenant/search): spec.regions[1]: " in local.stderr
    assert "Traceback" not in local.stderr
    assert history(env) == []

    tenant.write_text(tenant.read_text().replace("EU!", "eu"))
    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text().replace("[gpt-4o-eu, gpt-4o-us, claude-sonnet-us]",
                                                 "[gpt-4o-eu, gpt-5-eu, claude-sonnet-us]"))
    remote = gatectl("apply", "-f", str(policies), env=env)
    assert remote.returncode == 3
    assert f"{routes}: document 2 (Route/chat-smart): spec.models[1]: " in remote.stderr
    assert "gpt-5-eu" in remote.stderr and "nothing was changed" in remote.stderr
    assert history(env) == []
    assert gatectl("get", "tenants", env=env).stderr.strip() == "No Tenant resources found."


def test_get_table_yaml_json(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0

    table = gatectl("get", "tenants", env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "DISPLAY"]
    assert [line.split()[0] for line in lines[1:]] == ["payments", "platform", "search", "support"]

    as_yaml = gatectl("get", "tenant", "search", "-o", "yaml", env=env)
    written = yaml.safe_load((policies / "tenants" / "search.yaml").read_text())
    shown = yaml.safe_load(as_yaml.stdout)
    assert (shown["kind"], shown["metadata"]["name"], shown["spec"]["regions"]) == ("Tenant", "search", ["us", "eu"])
    assert shown["spec"]["projects"] == written["spec"]["projects"]

    as_json = json.loads(gatectl("get", "models", "-o", "json", env=env).stdout)
    assert "gpt-4o-eu" in [m["metadata"]["name"] for m in as_json["items"]]

    all_routes = list(yaml.safe_load_all(gatectl("get", "routes", "-o", "yaml", env=env).stdout))
    assert sorted(r["metadata"]["name"] for r in all_routes) == [
        "chat-cloud", "chat-fast", "chat-smart", "claude-sonnet", "claude-sonnet-eu", "gpt-4o-mini",
        "omni-moderation-latest", "text-embedding-3-small"]

    missing = gatectl("get", "route", "nope", env=env)
    assert missing.returncode == 3 and "nope" in missing.stderr


def test_key_secret_is_shown_once_and_never_again(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    created = gatectl("keys", "create", "ci-bot", "--tenant", "search", "--project", "ranking", "--route",
                      "chat-fast", "--expires-in", "30d", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split("secret: ")[1].split()[0]
    assert is_well_formed(secret)
    assert "only time the secret is shown" in created.stderr

    outputs = [gatectl(*args, env=env) for args in (
        ["get", "keys"], ["get", "apikey", "ci-bot", "-o", "yaml"], ["get", "keys", "-o", "json"], ["keys", "list"],
        ["history", "-o", "json"],
    )]
    for result in outputs:
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
    table = outputs[0].stdout.splitlines()
    assert table[1].split()[:5] == ["ci-bot", "search", "ranking", f"tw_...{secret[-4:]}", "chat-fast"]

    again = gatectl("keys", "create", "ci-bot", "--tenant", "search", env=env)
    assert again.returncode == 3 and "ci-bot" in again.stderr


def test_history_rollback_and_delete(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text().replace("attempts: 3", "attempts: 7"))
    assert gatectl("apply", "-f", str(routes), "--as", "alice", env=env).returncode == 0

    referenced = gatectl("delete", "route", "chat-fast", env=env)
    assert referenced.returncode == 3
    assert "Tenant/payments: spec.routes" in referenced.stderr

    rolled = gatectl("rollback", "--to", "1", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "Route/chat-fast configured" in rolled.stdout
    shown = yaml.safe_load(gatectl("get", "route", "chat-fast", "-o", "yaml", env=env).stdout)
    assert shown["spec"]["failover"]["attempts"] == 3

    entries = history(env)
    assert [e["revision"] for e in entries] == [3, 2, 1]
    assert [e["who"] for e in entries] == ["tester", "alice", "tester"]
    table = gatectl("history", env=env).stdout.splitlines()
    assert table[0].split() == ["REVISION", "TIME", "WHO", "CHANGES"]
    assert table[2].split()[:4] == ["2", table[2].split()[1], "alice", "update"]

    deleted = gatectl("delete", "model", "claude-haiku-us", env=env)
    assert deleted.returncode == 3  # chat-fast still names it
    tenant_gone = gatectl("delete", "tenant", "platform", env=env)
    assert (tenant_gone.returncode, tenant_gone.stdout.strip()) == (0, "Tenant/platform deleted")
    assert gatectl("get", "tenant", "platform", env=env).returncode == 3


def test_bad_token_and_config_file(env: dict[str, str], tmp_path: Path) -> None:
    wrong = gatectl("get", "tenants", env=env | {"TOLLWAY_ADMIN_TOKEN": "wrong"})
    assert wrong.returncode == 3 and "invalid admin token" in wrong.stderr

    config = tmp_path / "gatectl.yaml"
    config.write_text(yaml.safe_dump({"controlPlane": env["TOLLWAY_CONTROL_PLANE"], "adminToken": ADMIN_TOKEN}))
    from_file = {k: v for k, v in env.items() if k not in ("TOLLWAY_CONTROL_PLANE", "TOLLWAY_ADMIN_TOKEN")}
    ok = gatectl("get", "tenants", env=from_file | {"TOLLWAY_CONFIG": str(config)})
    assert ok.returncode == 0 and "No Tenant resources found." in ok.stderr
    flag_wins = gatectl("get", "tenants", "--admin-token", "wrong", env=from_file | {"TOLLWAY_CONFIG": str(config)})
    assert flag_wins.returncode == 3
