"""Fixtures of the fakes' own tests: the Bedrock fake's (``fake``, a running fake Bedrock Runtime, and
``no_aws_environment``) and the Google fakes' (``gemini`` and ``vertex``, running fakes of the Gemini API and Vertex
AI, ``gclient`` and ``vclient``, google-genai clients on them, and ``no_google_environment``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import Client

from tests.fakes.bedrock_client import ACCESS_KEY, REGION, SECRET_KEY
from tests.fakes.bedrock_upstream import fake_bedrock
from tests.fakes.google_client import GOOGLE_ENV, KEY, LOCATION, PROJECT, gemini_client, vertex_client
from tests.fakes.google_upstream import FakeGemini, FakeVertex, fake_gemini, fake_vertex


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


@pytest.fixture
def no_google_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No real Google credentials or settings from the environment: no keys, no ADC, no gcloud config."""
    for name in GOOGLE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.fixture
async def gemini() -> AsyncIterator[FakeGemini]:
    async with fake_gemini(api_key=KEY) as server:
        yield server


@pytest.fixture
async def gclient(gemini: FakeGemini) -> AsyncIterator[Client]:
    client = gemini_client(gemini)
    try:
        yield client
    finally:
        await client.aio.aclose()


@pytest.fixture
async def vertex() -> AsyncIterator[FakeVertex]:
    async with fake_vertex(project=PROJECT, location=LOCATION) as server:
        yield server


@pytest.fixture
async def vclient(vertex: FakeVertex) -> AsyncIterator[Client]:
    client = vertex_client(vertex)
    try:
        yield client
    finally:
        await client.aio.aclose()
