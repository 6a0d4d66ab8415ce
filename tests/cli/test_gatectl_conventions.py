"""gatectl's shell conventions, as a user meets them: --version, completion, wide help, YAML diffs, -o wide, label
selectors, and progress on a terminal with a summary at the end.

The real command as a subprocess against a real control plane process (embedded store); the completion script is
sourced by a real bash; the terminal is a pseudo-terminal.
"""

from __future__ import annotations

import importlib.metadata
import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli.gatectl_process import ROOT, base_env, gatectl


def test_version_is_the_package_version(tmp_path: Path) -> None:
    shown = gatectl("--version", env=base_env(tmp_path))
    assert (shown.returncode, shown.stdout) == (0, f"gatectl {importlib.metadata.version('tollway')}\n")


def test_help_is_not_cut_at_80_columns(tmp_path: Path) -> None:
    shown = gatectl("get", "--help", env=base_env(tmp_path))  # stdout is a pipe: click alone would assume 80
    assert shown.returncode == 0
    assert shown.stdout.startswith("Usage: gatectl get ")
    # The whole option help, on one line (rich markup used to eat the bracketed part).
    assert any("--control-plane" in line and "[env TOLLWAY_CONTROL_PLANE; default http://127.0.0.1:7070]" in line
               for line in shown.stdout.splitlines())
    assert "-l, --selector" in shown.stdout and "table|wide|yaml|json" in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) > 80


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    scripts = {shell: gatectl("completion", shell, env=env) for shell in ("bash", "zsh", "fish")}
    assert all(s.returncode == 0 for s in scripts.values())
    assert "complete -o default -F _gatectl_completion gatectl" in scripts["bash"].stdout
    assert "#compdef gatectl" in scripts["zsh"].stdout
    assert "complete --command gatectl" in scripts["fish"].stdout
    wrong = gatectl("completion", "tcsh", env=env)
    assert wrong.returncode == 2 and "tcsh" in wrong.stderr

    bin_dir = tmp_path / "bin"  # ``gatectl`` on PATH, as an installed one would be
    bin_dir.mkdir()
    wrapper = bin_dir / "gatectl"
    wrapper.write_text(f'#!/bin/sh\ncd "{ROOT}" && exec "{sys.executable}" -m cli.main "$@"\n')
    wrapper.chmod(0o755)
    session = textwrap.dedent("""\
        source <(gatectl completion bash)
        complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _gatectl_completion gatectl; \
echo "${COMPREPLY[*]}"; }
        complete_line gatectl ge
        complete_line gatectl get --sel
        complete_line gatectl providers -o ""
        """)
    done = subprocess.run(["bash", "-c", session], env=env | {"PATH": f"{bin_dir}:{env['PATH']}"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["get", "--selector", "table wide yaml json"]


def test_diff_is_a_unified_yaml_diff_per_document(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    (policies / "tenants" / "search.yaml").write_text(
        (policies / "tenants" / "search.yaml").read_text().replace("cc-2200", "cc-2300"))
    (policies / "tenants" / "new.yaml").write_text(textwrap.dedent("""\
        apiVersion: tollway.dev/v1
        kind: Tenant
        metadata: {name: labs, labels: {team: labs}}
        spec: {regions: [eu]}
        """))
    changed = gatectl("diff", "-f", str(policies), env=env)
    assert changed.returncode == 1, changed.stderr
    documents = changed.stdout.split("--- ")[1:]
    created, updated = sorted(documents)
    assert created.startswith("/dev/null\n+++ b/Tenant/labs\n@@ -0,0 +1,")
    assert "\n+apiVersion: tollway.dev/v1\n+kind: Tenant\n+metadata:\n+  name: labs\n" in created
    assert updated.startswith("a/Tenant/search\n+++ b/Tenant/search\n@@ ")
    assert "\n-    cost-center: cc-2200\n+    cost-center: cc-2300\n" in updated
    assert "{" not in updated, "YAML, not the canonical JSON"
    summary = changed.stderr.strip().splitlines()[-1]
    assert summary.startswith("diff: ") and "1 created, 1 configured" in summary and " unchanged in " in summary

    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0
    clean = gatectl("diff", "-f", str(policies), env=env)
    assert (clean.returncode, clean.stdout) == (0, "")


def test_get_wide_and_label_selectors(env: dict[str, str], policies: Path) -> None:
    assert gatectl("apply", "-f", str(policies), env=env).returncode == 0

    def names(*args: str) -> list[str]:
        shown = gatectl("get", "tenants", *args, env=env)
        assert shown.returncode == 0, shown.stderr
        return [line.split()[0] for line in shown.stdout.splitlines()[1:]]

    assert names("-l", "cost-center=cc-2200") == ["search"]
    assert names("-l", "cost-center==cc-2200") == ["search"]
    assert names("-l", "cost-center!=cc-2200") == ["payments", "platform", "support"]
    assert names("-l", "cost-center") == ["payments", "platform", "search", "support"]
    assert names("-l", "cost-center=cc-2200,team") == []
    nothing = gatectl("get", "tenants", "-l", "!cost-center", env=env)
    assert (nothing.returncode, nothing.stdout, nothing.stderr.strip()) == (0, "", "No Tenant resources found.")
    as_json = gatectl("get", "tenants", "-l", "cost-center in (a,b)", "-o", "json", env=env)
    assert as_json.returncode == 2
    assert "-l 'cost-center in (a,b)': set-based requirements (in, notin) are not supported" in as_json.stderr
    typo = gatectl("get", "tenants", "-l", "cost center=x", env=env)
    assert typo.returncode == 2 and "'cost center' is not a valid label key" in typo.stderr

    wide = gatectl("get", "tenants", "-o", "wide", env=env).stdout.splitlines()
    header = [c.strip() for c in wide[0].split("   ") if c.strip()]
    assert header[:5] == ["NAME", "DISPLAY NAME", "REGIONS", "PROJECTS", "ROUTES"]
    assert header[-4:] == ["BUDGET $/MONTH", "CONTENT LOGGING", "RETENTION DAYS", "LABELS"]
    search = next(line for line in wide[1:] if line.startswith("search "))
    assert search.endswith("cost-center=cc-2200") and "10000" in search
    providers = gatectl("get", "providers", "-o", "wide", env=env)
    assert "AWS REGION/PROFILE" in providers.stdout and "eu-central-1/-" in providers.stdout


def test_labels_are_validated_naming_file_and_field(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: tollway.dev/v1\nkind: Tenant\nmetadata: {name: labs, labels: {team: a b}}\n"
                   "spec: {regions: [eu]}\n")
    refused = gatectl("apply", "-f", str(bad), env=env)
    assert refused.returncode == 2
    assert f"{bad}: document 1 (Tenant/labs): metadata.labels: label team: value 'a b' is not valid" in refused.stderr


def run_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """gatectl with stderr on a pseudo-terminal; its exit status, stdout, and everything the terminal received."""
    controller, terminal = pty.openpty()
    received = b""
    try:
        process = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        while True:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not chunk:
                    break
                received += chunk
            elif process.poll() is not None:
                break
        stdout = process.stdout.read().decode() if process.stdout is not None else ""
        return process.wait(30), stdout, received.decode()
    finally:
        os.close(controller)


def test_apply_of_many_documents_shows_progress_on_a_terminal_and_a_summary(env: dict[str, str],
                                                                            tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        (folder / f"t{i:02}.yaml").write_text(f"apiVersion: tollway.dev/v1\nkind: Tenant\nmetadata: {{name: t{i:02}}}\n"
                                              "spec: {regions: [eu]}\n")
    code, stdout, terminal = run_on_a_terminal(env, "apply", "-f", str(folder))
    assert code == 0, terminal
    assert len(stdout.splitlines()) == 40 and "Tenant/t00 created" in stdout
    assert "\rvalidating: 40/40 files, 40 documents" in terminal
    assert "\rapplying 40 documents (" in terminal
    last = terminal.rstrip("\r\n").split("\r")[-1]  # after the progress line was cleared (\r, blanks, \r)
    assert terminal.rstrip("\r\n").split("\r")[-2].strip() == "", "the progress line is cleared"
    assert last.startswith("apply: 40 documents: 40 created in ") and last.endswith("s")

    # Not a terminal (a script, CI): no progress line, only the summary.
    piped = gatectl("apply", "-f", str(folder), env=env)
    assert "\r" not in piped.stderr
    assert piped.stderr.startswith("apply: 40 documents: 40 unchanged in ")
