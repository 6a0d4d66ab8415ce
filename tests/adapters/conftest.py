"""Fixtures of the adapters' end-to-end tests: a real data plane on loopback in front of a fake upstream, given the
upstream credentials its providers need and none of the machine's, checked at teardown for credentials in the logs.

- ``google_world``: the fake Gemini API and Vertex AI (``google_world.py``), for ``test_google_chat_e2e.py``,
  ``test_google_embeddings_e2e.py`` and ``test_google_failures_e2e.py``.
- ``bedrock_world``: the fake Bedrock Runtime (``bedrock_world.py``), for ``test_bedrock_chat_e2e.py`` and
  ``test_bedrock_invoke_e2e.py``.

Those test modules call theirs ``world``; so does ``test_adapters_e2e.py``, whose ``world`` is its own.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from tests.adapters.bedrock_world import ACCESS_KEY, REGION, SECRET_KEY, SECRETS, SESSION_TOKEN
from tests.adapters.bedrock_world import API_KEY as BEDROCK_API_KEY
from tests.adapters.bedrock_world import World as BedrockWorld
from tests.adapters.bedrock_world import snapshot as bedrock_snapshot
from tests.adapters.google_world import API_KEY as GEMINI_API_KEY
from tests.adapters.google_world import GOOGLE_ENV, LOCATION, PROJECT, WRONG_KEY
from tests.adapters.google_world import World as GoogleWorld
from tests.adapters.google_world import snapshot as google_snapshot
from tests.dataplane.in_process import in_process_data_plane
from tests.fakes.bedrock_upstream import fake_bedrock
from tests.fakes.google_upstream import fake_gemini, fake_vertex, new_service_account_key
from tollway.keyformat import generate_key


@pytest.fixture
async def google_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       caplog: pytest.LogCaptureFixture) -> AsyncIterator[GoogleWorld]:
    """A data plane whose Gemini providers authenticate with API keys from environment variables and whose Vertex
    ones with the fake's service account (or one it does not trust, or a variable left unset); at teardown, no API
    key, access token or private key in any log record (captured at DEBUG)."""
    # No real Google credentials or settings: no keys, no ADC, no gcloud configuration, no metadata server.
    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TEST_VERTEX_SA_UNSET", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    caplog.set_level(logging.DEBUG)
    key = generate_key()
    async with fake_gemini(api_key=GEMINI_API_KEY) as gemini, fake_vertex(project=PROJECT, location=LOCATION) as vertex:
        assert vertex.credentials_file is not None
        monkeypatch.setenv("TEST_GEMINI_KEY", GEMINI_API_KEY)
        monkeypatch.setenv("TEST_GEMINI_WRONG_KEY", WRONG_KEY)
        monkeypatch.setenv("TEST_VERTEX_SA", str(vertex.credentials_file))
        untrusted = new_service_account_key(PROJECT, "untrusted")  # a key the fake's token endpoint does not know
        monkeypatch.setenv("TEST_VERTEX_SA_UNTRUSTED", str(untrusted.write(tmp_path / "untrusted.json",
                                                                           vertex.token_uri)))
        async with in_process_data_plane(google_snapshot(gemini, vertex, key)) as dp:
            world = GoogleWorld(dp.url, key, gemini, vertex, dp.spool)
            try:
                yield world
            finally:
                await world.close()
        secrets = [*world.secrets(), *(line for line in untrusted.private_key_pem.splitlines()
                                       if "-----" not in line)]
    assert_not_logged(caplog, secrets)


@pytest.fixture
async def bedrock_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                        caplog: pytest.LogCaptureFixture) -> AsyncIterator[BedrockWorld]:
    """A data plane that finds its AWS credentials through botocore's standard chain, given environment variables
    only (and a Bedrock API key for one provider); at teardown, neither the secret key nor the session token in any
    log record (captured at DEBUG)."""
    # botocore's chain sees these variables and nothing else: no profile, no file, no metadata endpoint.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN", "AWS_BEARER_TOKEN_BEDROCK", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CREDENTIAL_EXPIRATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("TOLLWAY_TEST_BEDROCK_API_KEY", BEDROCK_API_KEY)
    caplog.set_level(logging.DEBUG)
    key = generate_key()
    async with fake_bedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token=SESSION_TOKEN,
                            region=REGION) as fake:
        fake.api_key = BEDROCK_API_KEY
        async with in_process_data_plane(bedrock_snapshot(fake.endpoint, key)) as dp:
            world = BedrockWorld(dp.url, key, fake, dp.spool, tmp_path / "missing-credentials")
            try:
                yield world
            finally:
                await world.close()
    assert_not_logged(caplog, SECRETS)


def assert_not_logged(caplog: pytest.LogCaptureFixture, secrets: Iterable[str]) -> None:
    """No log record of the test (setup, call and teardown) holds any of ``secrets``. (At teardown
    ``caplog.records`` is the teardown's: the test's own records are the "call" phase's.)"""
    logged = "\n".join(record.getMessage() for phase in ("setup", "call", "teardown")
                       for record in caplog.get_records(phase))
    for secret in secrets:
        assert secret not in logged, "a credential reached the logs"
