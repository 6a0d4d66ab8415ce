"""gatectl end to end: the real command as a subprocess against a real control plane process (embedded store)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.cli.gatectl_process import ADMIN_TOKEN, ROOT, gatectl
from tollway.keyformat import is_well_formed


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
    assert changed.stdout.startswith("--- a/Route/chat-fast\n+++ b/Route/chat-fast\n@@ ")  # a YAML diff
    assert "\n-    attempts: 3\n" in changed.stdout and "\n+    attempts: 5\n" in changed.stdout

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
    assert again.returncode == 3
    assert "ApiKey 'ci-bot' already exists" in again.stderr and "run it again" not in again.stderr


def test_history_rollback_and_delete(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text().replace("attempts: 3", "attempts: 7"))
    assert gatectl("apply", "-f", str(routes), "--as", "alice", env=env).returncode == 0

    referenced = gatectl("delete", "route", "chat-fast", env=env)
    assert referenced.returncode == 3
    assert "cannot delete Route/chat-fast: still referred to by " in referenced.stderr
    assert "Tenant/payments (spec.routes[" in referenced.stderr

    rolled = gatectl("rollback", "--to", "1", "--yes", env=env)
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


def key_spec(env: dict[str, str], name: str) -> dict[str, Any]:
    shown = gatectl("get", "key", name, "-o", "json", env=env)
    assert shown.returncode == 0, shown.stderr
    spec: dict[str, Any] = json.loads(shown.stdout)["spec"]
    return spec


def test_keys_limits_rotate_revoke_and_referenced_delete(env: dict[str, str], policies: Path,
                                                         tmp_path: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    created = gatectl("keys", "create", "ci-bot", "--tenant", "search", "--budget-usd", "50",
                      "--budget-soft-percent", "90", "--requests-per-minute", "60", "--tokens-per-minute", "20000",
                      env=env)
    assert created.returncode == 0, created.stderr
    first = created.stdout.split("secret: ")[1].split()[0]
    spec = key_spec(env, "ci-bot")
    assert (spec["budget"]["monthlyUsd"], spec["budget"]["softPercent"]) == ("50", 90)
    assert spec["rateLimits"] == {"requestsPerMinute": 60, "tokensPerMinute": 20000}

    for flags, named in ((["--budget-usd", "lots"], "--budget-usd 'lots'"),
                         (["--budget-soft-percent", "90"], "--budget-usd is required"),
                         (["--requests-per-minute", "0"], "--requests-per-minute 0")):
        bad = gatectl("keys", "create", "other", "--tenant", "search", *flags, env=env)
        assert (bad.returncode, named in bad.stderr) == (2, True), bad.stderr
    assert gatectl("get", "key", "other", env=env).returncode == 3  # nothing was created
    saved = tmp_path / "ci-bot.yaml"  # a copy of the key as it is now, applied again after rotation and revocation
    shown = gatectl("get", "key", "ci-bot", "-o", "yaml", env=env)
    assert shown.returncode == 0, shown.stderr
    saved.write_text(shown.stdout)

    rotated = gatectl("keys", "rotate", "ci-bot", "--overlap", "1h", env=env)
    assert rotated.returncode == 0, rotated.stderr
    second = rotated.stdout.split("secret: ")[1].split()[0]
    assert is_well_formed(second) and second != first
    assert "ApiKey/ci-bot rotated" in rotated.stdout and "the old secret works until 20" in rotated.stdout
    spec = key_spec(env, "ci-bot")
    assert spec["hint"] == f"tw_...{second[-4:]}" and len(spec["previousSecrets"]) == 1
    listed = gatectl("keys", "list", env=env)
    assert "rotating (old secret until" in listed.stdout
    assert first not in listed.stdout + rotated.stderr and second not in listed.stdout
    # The saved document cannot make the rotated-out secret the key's again: refused, naming file and field.
    restored = gatectl("apply", "-f", str(saved), env=env)
    assert restored.returncode == 3 and "ci-bot.yaml" in restored.stderr and "spec.hash" in restored.stderr
    assert "rotated out of ApiKey 'ci-bot'" in restored.stderr, restored.stderr
    assert key_spec(env, "ci-bot")["hint"] == f"tw_...{second[-4:]}"  # nothing changed

    # A key that something refers to cannot lose its tenant: the error names the referrer, not "does not exist".
    tenant_gone = gatectl("delete", "tenant", "search", env=env)
    assert tenant_gone.returncode == 3
    assert "cannot delete Tenant/search: still referred to by ApiKey/ci-bot (spec.tenant)" in tenant_gone.stderr
    assert "does not exist" not in tenant_gone.stderr

    revoked = gatectl("keys", "revoke", "ci-bot", env=env)
    assert (revoked.returncode, revoked.stdout.split()[:2]) == (0, ["ApiKey/ci-bot", "revoked"]), revoked.stderr
    spec = key_spec(env, "ci-bot")
    assert "revokedAt" in spec and "previousSecrets" not in spec
    assert "revoked 20" in gatectl("get", "keys", env=env).stdout
    unrevoked = gatectl("apply", "-f", str(saved), env=env)
    assert unrevoked.returncode == 3 and "spec.revokedAt" in unrevoked.stderr, unrevoked.stderr
    assert "revokedAt" in key_spec(env, "ci-bot")  # still revoked
    again = gatectl("keys", "rotate", "ci-bot", env=env)
    assert again.returncode == 3 and "ApiKey 'ci-bot' is revoked" in again.stderr
    assert "run it again" not in again.stderr
    assert gatectl("keys", "revoke", "missing", env=env).returncode == 3

    entries = history(env)
    assert [(e.get("action"), [c["name"] for c in e["changes"]]) for e in entries[:3]] == [  # type: ignore[attr-defined]
        ("revoke", ["ci-bot"]), ("rotate", ["ci-bot"]), (None, ["ci-bot"])]
    table = gatectl("history", env=env).stdout
    assert "revoke ApiKey/ci-bot" in table and "rotate ApiKey/ci-bot" in table

    # Rolling back to before the key existed, keys included, still cannot resurrect it: revoked stays revoked.
    before_key = int(str(entries[2]["revision"])) - 1
    for to in (before_key + 1, before_key + 2):  # as created; as rotated (both accept revoked secrets)
        rolled = gatectl("rollback", "--to", str(to), "--include-keys", "--yes", env=env)
        assert rolled.returncode == 0, rolled.stderr
        assert "keeps ApiKey/ci-bot as it is (would update: the secret it had then was revoked" in rolled.stdout
        assert "revokedAt" in key_spec(env, "ci-bot")
    assert history(env)[0]["revision"] == entries[0]["revision"]  # nothing else to do: nothing written


def test_rollback_shows_asks_and_keeps_keys(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    for name in ("alpha", "beta"):
        assert gatectl("keys", "create", name, "--tenant", "search", env=env).returncode == 0
    routes = policies / "routes.yaml"
    routes.write_text(routes.read_text().replace("attempts: 3", "attempts: 7"))
    assert gatectl("apply", "-f", str(routes), env=env).returncode == 0
    assert [e["revision"] for e in history(env)] == [4, 3, 2, 1]

    scripted = gatectl("rollback", "--to", "1", env=env)  # stdin is not a terminal, and no --yes
    assert scripted.returncode == 2
    assert "stdin is not a terminal; pass --yes" in scripted.stderr
    assert "rollback to revision 1 (now at revision 4) would:" in scripted.stdout
    assert "  update Route/chat-fast" in scripted.stdout.splitlines()
    assert "keeps ApiKey/alpha as it is (would delete: keys are kept unless --include-keys)" in scripted.stdout
    assert len(history(env)) == 4

    dry = gatectl("rollback", "--to", "1", "--include-keys", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert {"  delete ApiKey/alpha", "  delete ApiKey/beta", "  update Route/chat-fast"} <= set(lines)
    assert "  warning: deletes 2 key(s), whose clients will get 401: ApiKey/alpha, ApiKey/beta" in lines
    assert len(history(env)) == 4

    declined = answer_on_a_terminal(env, "n\n", "rollback", "--to", "1")
    assert declined.returncode == 0 and "Proceed? [y/N]" in declined.stdout
    assert "rollback cancelled; nothing was changed" in declined.stderr
    assert len(history(env)) == 4

    rolled = gatectl("rollback", "--to", "1", "--yes", env=env)
    assert rolled.returncode == 0, rolled.stderr
    assert "Route/chat-fast configured" in rolled.stdout and "now at revision 5" in rolled.stdout
    assert yaml.safe_load(gatectl("get", "route", "chat-fast", "-o", "yaml", env=env).stdout)[
        "spec"]["failover"]["attempts"] == 3
    assert {line.split()[0] for line in gatectl("get", "keys", env=env).stdout.splitlines()[1:]} == {
        "alpha", "beta"}
    assert history(env)[0].get("action") == "rollback"


def answer_on_a_terminal(env: dict[str, str], answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """gatectl with a pseudo-terminal as stdin (as a person runs it), typing ``answer``."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, stdin=terminal,
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(terminal)
        os.close(controller)
