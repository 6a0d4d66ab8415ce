"""Fixtures of the fakes' own tests: the Bedrock fake's (``fake``, a running fake Bedrock Runtime, and
``no_aws_environment``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.bedrock_client import ACCESS_KEY, REGION, SECRET_KEY
from tests.fakes.bedrock_upstream import fake_bedrock


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credential chain, config file or bearer token of the machine reaches botocore."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> Any:
    async with fake_bedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION) as server:
        yield server
