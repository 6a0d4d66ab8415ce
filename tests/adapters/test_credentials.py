"""Resolving each provider's credential at snapshot install: the reason names the source that failed, never a value.

The AWS and Google cases run botocore's and google-auth's real resolution over files written here (the chain's
environment variables point at them), with the instance and container metadata sources disabled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dataplane.core.health import Health
from dataplane.snapshot.runtime import Deployment, Prices, Provider
from dataplane.upstream.credentials import CredentialCheck, credential_problem
from tollway.pb import snapshot_pb2 as pb

SECRET = "sk-test-credential-0123456789"


def provider(type_: str = "openai", env: str = "", aws_profile: str = "") -> pb.Provider:
    return pb.Provider(name=f"{type_}-eu", type=type_, base_url="https://example.test", region="eu",
                       credential_env=env, aws_profile=aws_profile)


@pytest.mark.parametrize(("type_", "environ", "expected"), [
    ("openai", {"KEY": SECRET}, ""),
    ("openai", {}, "environment variable KEY is not set"),
    ("anthropic", {"KEY": ""}, "environment variable KEY is empty"),
    ("azure", {"KEY": SECRET + "\n"}, "environment variable KEY holds a value that cannot be sent in a header"),
    ("gemini", {}, "environment variable KEY is not set"),
    ("bedrock", {}, "environment variable KEY is not set"),  # a Bedrock API key
    ("vertex", {"KEY": "/nonexistent/key.json"},
     "the service account key file named by environment variable KEY does not exist"),
])
def test_a_variable_named_in_policy(type_: str, environ: dict[str, str], expected: str) -> None:
    assert credential_problem(provider(type_, "KEY"), environ) == expected


def test_no_credential_configured_and_mock_need_none() -> None:
    assert credential_problem(provider("openai"), {}) == ""  # a local vLLM without a key
    assert credential_problem(provider("mock", "KEY"), {}) == ""


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """botocore's chain confined to files of this test, without instance or container metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[default]\nregion = eu-west-1\n")
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return config, credentials


def test_aws_chain_without_credentials_names_the_profile(aws_files: tuple[Path, Path]) -> None:
    why = credential_problem(provider("bedrock", aws_profile="team-x"), os.environ)
    assert why == "AWS profile 'team-x' is not configured (shared config and credentials files)"
    why = credential_problem(provider("bedrock"), os.environ)
    assert why.startswith("AWS credential chain found no credentials (the default profile: ")


def test_aws_chain_finds_a_profile_or_defers_to_what_needs_a_program(aws_files: tuple[Path, Path]) -> None:
    config, credentials = aws_files
    credentials.write_text(f"[team-x]\naws_access_key_id = AKIATESTTESTTEST\naws_secret_access_key = {SECRET}\n")
    config.write_text("[default]\nregion = eu-west-1\n[profile by-process]\ncredential_process = /bin/false\n")
    assert credential_problem(provider("bedrock", aws_profile="team-x"), os.environ) == ""
    # A credential_process is run by the adapter at first use, not at install (it may be slow, or prompt).
    assert credential_problem(provider("bedrock", aws_profile="by-process"), os.environ) == ""


def test_google_adc_without_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    for name in ("GCE_METADATA_HOST", "K_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application-default login here
    why = credential_problem(provider("vertex"), os.environ)
    assert why.startswith("Application Default Credentials found none")
    adc = tmp_path / "adc.json"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert "GOOGLE_APPLICATION_CREDENTIALS does not exist" in credential_problem(provider("vertex"), os.environ)
    adc.write_text(json.dumps({"type": "authorized_user"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    assert credential_problem(provider("vertex"), os.environ) == ""


def deployment(provider_name: str) -> Deployment:
    p = Provider(name=provider_name, type="openai", base_url="https://x.test", region="eu", connect_timeout_s=1,
                 read_timeout_s=1, api_version="", mock_delay_ms=0, mock_tokens_per_second=0, credential=None)
    return Deployment(f"d-{provider_name}", p, "m", frozenset(), 1000, 100, Prices.of(1, 1, 1))


def test_the_check_reaches_health_when_the_snapshot_is_adopted() -> None:
    snap = pb.Snapshot(version="v1", region="eu")
    snap.providers.add(name="with", type="openai", base_url="https://a.test", region="eu", credential_env="HAVE")
    snap.providers.add(name="without", type="openai", base_url="https://b.test", region="eu", credential_env="NOPE")
    health = Health()
    have, lack = deployment("with"), deployment("without")
    adopt = CredentialCheck(health, {"HAVE": SECRET}, clock=lambda: 5.0).prepare(snap)
    assert health.credential_problem(lack) == "", "nothing changes before the snapshot is adopted"
    adopt()
    assert health.credential_problem(lack) == "environment variable NOPE is not set"
    assert health.credential_problem(have) == ""
    assert [v.state for v in health.view([have, lack], 5.0)] == ["healthy", "no-credential"]
    assert all(SECRET not in repr(v) for v in health.view([have, lack], 5.0))
