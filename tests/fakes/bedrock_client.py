"""Driving the fake Bedrock Runtime as AWS's clients do: botocore's own client (run in a thread: it is
synchronous) and raw requests signed with botocore's SigV4Auth, for the fake's tests (``test_bedrock_fake*``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import yarl
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.session import get_session  # type: ignore[import-untyped]

from tests.fakes.bedrock_upstream import (
    FakeBedrock,
)

ACCESS_KEY = "AKIDFAKETEST0123456"
SECRET_KEY = "fakeSecretKey/0123456789abcdefghijklmnopq"
REGION = "eu-central-1"
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
CLAUDE_EU = "eu.anthropic.claude-3-5-haiku-20241022-v1:0"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                  "required": ["city"]}
WEATHER = {"toolSpec": {"name": "weather", "description": "The weather in a city",
                        "inputSchema": {"json": WEATHER_SCHEMA}}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}



def make_client(fake: FakeBedrock, *, secret_key: str = SECRET_KEY, access_key: str = ACCESS_KEY,
                session_token: str | None = None, region: str = REGION, attempts: int = 1,
                read_timeout: float = 10) -> Any:
    return get_session().create_client(
        "bedrock-runtime", region_name=region, endpoint_url=fake.endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, aws_session_token=session_token,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=read_timeout,
                      connect_timeout=5))


async def call(fake: FakeBedrock, operation: str, /, client_options: dict[str, Any] | None = None,
               **params: Any) -> Any:
    """``client.<operation>(**params)`` with a fresh botocore client, in a thread; an InvokeModel body is read."""
    def run() -> Any:
        response = getattr(make_client(fake, **(client_options or {})), operation)(**params)
        if operation == "invoke_model":
            response["body"] = orjson.loads(response["body"].read())
        return response
    return await asyncio.to_thread(run)


async def stream(fake: FakeBedrock, **params: Any) -> list[dict[str, Any]]:
    """Every event of a ``converse_stream`` as botocore parses it."""
    def run() -> list[dict[str, Any]]:
        return list(make_client(fake).converse_stream(**params)["stream"])
    return await asyncio.to_thread(run)


def error_code(error: Any) -> str:
    code: str = error.response["Error"]["Code"]
    return code


async def signed_post(fake: FakeBedrock, path: str, body: bytes, *, secret_key: str = SECRET_KEY,
                      headers: dict[str, str] | None = None,
                      change: Callable[[dict[str, str]], None] | None = None,
                      sent_body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to ``path`` (already percent-encoded) signed by botocore's SigV4Auth; ``change`` edits the
    signed headers and ``sent_body`` replaces the body after signing."""
    request = AWSRequest(method="POST", url=fake.endpoint + path, data=body,
                         headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(ACCESS_KEY, secret_key), "bedrock", REGION).add_auth(request)
    sent = dict(request.headers.items())
    if change is not None:
        change(sent)
    async with aiohttp.ClientSession() as session, session.post(
            yarl.URL(fake.endpoint + path, encoded=True), data=body if sent_body is None else sent_body,
            headers=sent) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def path_of(model: str, operation: str) -> str:
    return f"/model/{model.replace(':', '%3A')}/{operation}"
