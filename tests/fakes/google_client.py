"""Driving the Gemini API and Vertex AI fakes as Google's clients do, for the fakes' tests (``test_google_fake*``):
the google-genai SDK's client on either fake, raw requests (``raw_post``) at their URLs, Google's strict SSE framing
(``sse_events``), and the names, models and function declarations the tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
from google.genai import Client, types

from tests.fakes.google_upstream import FakeGemini, FakeVertex

KEY = "AIza-fake-test-0123456789"
PROJECT = "tollway-test"
LOCATION = "europe-west4"
MODEL = "gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(name="get_weather", description="The weather in a city.", parameters=types.Schema(
    type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING),
                                        "days": types.Schema(type=types.Type.INTEGER, minimum=1)},
    required=["city"]))
TIME = types.FunctionDeclaration(name="get_time", description="The time in a city.", parameters_json_schema={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
GOOGLE_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
              "GOOGLE_CLOUD_LOCATION", "GOOGLE_CLOUD_QUOTA_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI",
              "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION", "GOOGLE_API_USE_CLIENT_CERTIFICATE",
              "GOOGLE_API_USE_MTLS_ENDPOINT", "GCE_METADATA_HOST", "GCE_METADATA_IP",
              "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED")


def gemini_client(fake: FakeGemini, key: str = KEY) -> Client:
    return Client(api_key=key, http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"))


def vertex_client(fake: FakeVertex, credentials: Any = None) -> Client:
    return Client(vertexai=True, project=PROJECT, location=LOCATION, credentials=credentials or fake.credentials(),
                  http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1"))


async def raw_post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


def gemini_url(fake: FakeGemini, method: str, model: str = MODEL) -> str:
    return f"{fake.base_url}/v1beta/models/{model}:{method}"


def vertex_url(fake: FakeVertex, method: str, model: str = MODEL, project: str = PROJECT) -> str:
    return f"{fake.base_url}/v1/projects/{project}/locations/{LOCATION}/publishers/google/models/{model}:{method}"


def hello() -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}


def sse_events(raw: bytes) -> Iterator[dict[str, Any]]:
    """Google's SSE framing, strictly: ``data: <json>`` events each ended by CRLF CRLF, nothing else."""
    assert raw.endswith(b"\r\n\r\n")
    for event in raw.split(b"\r\n\r\n")[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        yield orjson.loads(event[len(b"data: "):])
