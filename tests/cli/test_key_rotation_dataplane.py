"""Key rotation and revocation as clients see them: a real gateway (``gatectl up``: control plane, data plane,
mock provider), the official openai SDK, and ``gatectl keys rotate/revoke`` as a subprocess.

The old secret's cut-off is in the snapshot (its own expiry), so the data plane refuses it on time with no new
snapshot: the test checks that the version the data plane runs did not change across the cut-off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from cli.commands.run.up import DEMO_KEY_NAME
from tests.cli.gatectl_process import base_env, gatectl
from tests.cli.test_gatectl_up import FIRST_LINES, start_up

OVERLAP_SECONDS = 3


def poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def accepted(base_url: str, secret: str) -> bool:
    """One chat completion with ``secret``: True when served, False on 401 (anything else fails the test)."""
    with openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30) as client:
        try:
            client.chat.completions.create(model="chat-fast", messages=[{"role": "user", "content": "hi"}])
        except openai.AuthenticationError:
            return False
    return True


def refusal(base_url: str, secret: str) -> tuple[int, Any]:
    with (openai.OpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=30) as client,
          pytest.raises(openai.AuthenticationError) as caught):
        client.chat.completions.create(model="chat-fast", messages=[{"role": "user", "content": "hi"}])
    return caught.value.status_code, caught.value.response.json()


def running_versions(admin: dict[str, str]) -> list[str]:
    planes = gatectl("dataplanes", "-o", "json", env=admin)
    assert planes.returncode == 0, planes.stderr
    return [str(p["version"]) for p in json.loads(planes.stdout)["items"]]


def test_rotated_secret_works_for_the_overlap_then_401_and_revoke_cuts_all(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    up = start_up(tmp_path, "up", env)
    try:
        found = up.wait_for(FIRST_LINES, stream="stdout")
        base_url, old = found.group(1), found.group(2)
        export = up.wait_for(r"export TOLLWAY_CONTROL_PLANE=(\S+) TOLLWAY_ADMIN_TOKEN=(\S+)\n", stream="stdout")
        admin = env | {"TOLLWAY_CONTROL_PLANE": export.group(1), "TOLLWAY_ADMIN_TOKEN": export.group(2)}
        assert accepted(base_url, old)

        rotated = gatectl("keys", "rotate", DEMO_KEY_NAME, "--overlap", f"{OVERLAP_SECONDS}s", "-q", env=admin)
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip()
        cut_off = json.loads(gatectl("get", "key", DEMO_KEY_NAME, "-o", "json", env=admin).stdout)[
            "spec"]["previousSecrets"][0]["expiresAt"]

        poll(lambda: accepted(base_url, new), 15, "the new secret accepted")
        assert time.time() < cut_off, "the snapshot took longer than the overlap to arrive"
        assert accepted(base_url, old)  # during the overlap both work
        version = running_versions(admin)

        poll(lambda: not accepted(base_url, old), OVERLAP_SECONDS + 10, "the old secret refused")
        assert time.time() >= cut_off - 1  # not before its time (unix seconds)
        status, body = refusal(base_url, old)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"] == "API key expired"
        assert old not in json.dumps(body)
        assert running_versions(admin) == version  # cut off by the snapshot's own time, not by a new snapshot
        assert accepted(base_url, new)

        revoked = gatectl("keys", "revoke", DEMO_KEY_NAME, env=admin)
        assert revoked.returncode == 0, revoked.stderr
        poll(lambda: not accepted(base_url, new), 15, "the revoked key refused")
        status, body = refusal(base_url, new)
        assert (status, body["error"]["code"]) == (401, "invalid_api_key")
    finally:
        assert up.interrupt() == 0, up.stderr.read_text()
    logs = up.stdout.read_text() + up.stderr.read_text()
    assert new not in logs
