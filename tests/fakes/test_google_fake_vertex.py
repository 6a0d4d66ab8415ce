"""The Vertex AI fake driven by the official google-genai SDK and google-auth: the service account's OAuth tokens
(the JWT-bearer grant, the token endpoint's checks, lifetime, refresh and expiry, missing, unknown, narrow or
misplaced credentials, google-auth's transports), then Vertex's generative endpoints (streams with usage on the last
chunk, Vertex's errors).

Every call goes through the SDK's async client: the fakes run on the test's event loop, and google-auth's token
refresh (blocking, on the requests transport) runs in a thread, as the SDK does it."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
import urllib3
from google.auth import crypt, jwt
from google.auth.transport import requests as google_requests
from google.auth.transport import urllib3 as google_urllib3
from google.genai import Client, errors, types

from tests.fakes.google_client import (
    KEY,
    LOCATION,
    MODEL,
    PROJECT,
    hello,
    raw_post,
    vertex_client,
    vertex_url,
)
from tests.fakes.google_upstream import (
    CLOUD_PLATFORM_SCOPE,
    GOOGLE_TOKEN_URI,
    JWT_BEARER_GRANT,
    FakeVertex,
    ServiceAccountKey,
    new_service_account_key,
    prompt_tokens,
    text_tokens,
)

pytestmark = [pytest.mark.usefixtures("no_google_environment"),
              pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")]


# --- Vertex: service-account tokens ------------------------------------------------------------------------------

async def test_vertex_generate_with_a_service_account_token(vertex: FakeVertex, vclient: Client) -> None:
    response = await vclient.aio.models.generate_content(model=MODEL, contents="Hello Vertex.")
    assert response.text == vertex.reply and response.create_time is not None
    received = vertex.requests[-1]
    assert received.path == f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}" \
                            ":generateContent"
    assert len(vertex.token_requests) == 1
    grant = vertex.token_requests[0].body
    assert grant["grant_type"] == JWT_BEARER_GRANT
    claims = jwt.decode(grant["assertion"], certs=vertex.service_account.public_key_pem if vertex.service_account
                        else "", audience=GOOGLE_TOKEN_URI)  # type: ignore[no-untyped-call]
    assert claims["scope"] == CLOUD_PLATFORM_SCOPE and claims["iss"].endswith(f"@{PROJECT}.iam.gserviceaccount.com")
    token = received.headers["Authorization"].removeprefix("Bearer ")
    assert token in vertex.tokens and token.startswith("ya29.")
    usage = response.usage_metadata
    assert usage and usage.traffic_type == types.TrafficType.ON_DEMAND
    assert usage.candidates_tokens_details and usage.candidates_tokens_details[0].token_count == text_tokens(
        vertex.reply)
    assert usage.prompt_token_count == prompt_tokens(received.body)
    assert response.candidates and response.candidates[0].avg_logprobs is not None


async def test_token_lifetime_refresh_and_expiry(vertex: FakeVertex) -> None:
    vertex.token_lifetime_s = 1  # below google-auth's refresh threshold: every call refreshes
    credentials = vertex.credentials()
    client = vertex_client(vertex, credentials)
    try:
        for _ in range(2):
            assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text == vertex.reply
        assert len(vertex.token_requests) == 2
        used = [r.headers["Authorization"] for r in vertex.requests]
        assert len(set(used)) == 2
        await asyncio.sleep(1.05)
        status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"Authorization": used[-1]})
        assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"
        assert body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"

        vertex.token_lifetime_s = 3599  # the credentials keep this one; the server expires it
        assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text
        grants = len(vertex.token_requests)
        vertex.expire_tokens()
        with pytest.raises(errors.ClientError) as expired:
            await client.aio.models.generate_content(model=MODEL, contents="Hi")
        assert expired.value.code == 401 and expired.value.status == "UNAUTHENTICATED"
        assert expired.value.details["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
        await asyncio.to_thread(credentials.refresh, google_requests.Request())
        assert (await client.aio.models.generate_content(model=MODEL, contents="Hi")).text
        assert len(vertex.token_requests) == grants + 1
    finally:
        await client.aio.aclose()


async def test_missing_unknown_and_misplaced_credentials(vertex: FakeVertex) -> None:
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello())
    assert status == 401 and body["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert body["error"]["message"].startswith("Request is missing required authentication credential.")
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"Authorization": "Bearer ya29.no"})
    assert status == 401 and body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert body["error"]["details"][0]["metadata"]["method"] == (
        "google.cloud.aiplatform.v1.PredictionService.GenerateContent")
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(), {"x-goog-api-key": KEY})
    assert status == 401 and body["error"]["message"].startswith("API keys are not supported by this API.")

    narrow = vertex.credentials(scopes=("https://www.googleapis.com/auth/devstorage.read_only",))
    await asyncio.to_thread(narrow.refresh, google_requests.Request())
    status, body = await raw_post(vertex_url(vertex, "generateContent"), hello(),
                                  {"Authorization": f"Bearer {narrow.token}"})
    assert status == 403 and body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    credentials = vertex.credentials()
    await asyncio.to_thread(credentials.refresh, google_requests.Request())
    status, body = await raw_post(vertex_url(vertex, "generateContent", project="someone-else"), hello(),
                                  {"Authorization": f"Bearer {credentials.token}"})
    assert status == 403 and body["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


async def test_token_endpoint_checks_the_jwt(vertex: FakeVertex) -> None:
    key = vertex.service_account
    assert key is not None
    now = int(time.time())
    claims = {"iss": key.client_email, "aud": GOOGLE_TOKEN_URI, "iat": now, "exp": now + 3600,
              "scope": CLOUD_PLATFORM_SCOPE}

    def signed(payload: dict[str, Any], by: ServiceAccountKey = key, key_id: str = key.private_key_id) -> str:
        signer = crypt.RSASigner.from_string(by.private_key_pem, key_id)  # type: ignore[no-untyped-call]
        return str(jwt.encode(signer, payload).decode())  # type: ignore[no-untyped-call]

    async def grant(assertion: str, grant_type: str = JWT_BEARER_GRANT) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(vertex.token_uri, data={
                "grant_type": grant_type, "assertion": assertion}) as resp:
            return resp.status, await resp.json(content_type=None)

    status, body = await grant(signed(claims))
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert body["access_token"] in vertex.tokens
    other = new_service_account_key(PROJECT, "intruder")
    assert await grant(signed(claims, other)) == (400, {
        "error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    status, body = await grant(signed({**claims, "iss": other.client_email}, other, other.private_key_id))
    assert (status, body["error_description"]) == (400, "Invalid grant: account not found")
    vertex.trust(other)
    status, body = await grant(signed({**claims, "iss": other.client_email}, other, other.private_key_id))
    assert status == 200
    status, body = await grant(signed({**claims, "aud": "https://example.com/token"}))
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await grant(signed({**claims, "iat": now - 7200, "exp": now - 3600}))
    assert status == 400 and body["error_description"].startswith("Invalid JWT: Token must be a short-lived token")
    status, body = await grant(signed({k: v for k, v in claims.items() if k != "scope"}))
    assert (status, body["error"]) == (400, "invalid_scope")
    status, body = await grant(signed(claims), grant_type="client_credentials")
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await grant(base64.b64encode(b"not a jwt").decode())
    assert (status, body["error"]) == (400, "invalid_request")


async def test_google_auth_transports_that_work_here(vertex: FakeVertex) -> None:
    by_requests = vertex.credentials()
    await asyncio.to_thread(by_requests.refresh, google_requests.Request())
    by_urllib3 = vertex.credentials()
    await asyncio.to_thread(by_urllib3.refresh,
                            google_urllib3.Request(urllib3.PoolManager()))  # type: ignore[no-untyped-call]
    assert by_requests.token in vertex.tokens and by_urllib3.token in vertex.tokens
    assert by_requests.expiry is not None and not by_requests.expired


# --- Vertex: the generative endpoints ----------------------------------------------------------------------------

async def test_vertex_stream_has_usage_on_the_last_chunk_only(vertex: FakeVertex, vclient: Client) -> None:
    vertex.thoughts_tokens = 5
    chunks = [c async for c in await vclient.aio.models.generate_content_stream(model=MODEL, contents="Stream.")]
    assert "".join(c.text or "" for c in chunks) == vertex.reply
    assert [c.usage_metadata is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    usage = chunks[-1].usage_metadata
    assert usage and usage.thoughts_token_count == 5 and usage.candidates_token_count == text_tokens(vertex.reply)
    assert vertex.requests[-1].path.endswith(f"/models/{MODEL}:streamGenerateContent")
    assert all(c.create_time is not None for c in chunks)


async def test_vertex_errors(vertex: FakeVertex, vclient: Client) -> None:
    with pytest.raises(errors.ClientError) as missing:
        await vclient.aio.models.generate_content(model="gemini-0.9-ultra", contents="Hi")
    assert missing.value.code == 404 and missing.value.message == (
        f"Publisher Model `projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-0.9-ultra` was not "
        "found or your project does not have access to it. Please ensure you are using a valid model version. For "
        "more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")
    with pytest.raises(errors.ClientError) as unknown:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi", config=types.GenerateContentConfig(
            http_options=types.HttpOptions(extra_body={"generationConfig": {"bogus": 1}})))
    assert unknown.value.message == (
        "Invalid JSON payload received. Unknown name \"bogus\" at 'generation_config': Cannot find field.")
    with pytest.raises(errors.ClientError) as hot:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi", config=types.GenerateContentConfig(
            temperature=3))
    assert hot.value.message == ("Unable to submit request because it has a temperature value of 3.0 but the supported "
                                 "range is from 0 (inclusive) to 2.0001 (exclusive). Update the value and try again.")
    vertex.fail_status, vertex.fail_times = 429, 1
    with pytest.raises(errors.ClientError) as limited:
        await vclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert limited.value.status == "RESOURCE_EXHAUSTED" and limited.value.message and limited.value.message.startswith(
        "Resource exhausted. Please try again later.")
    vertex.block_prompt = True
    blocked = await vclient.aio.models.generate_content(model=MODEL, contents="Hi")
    assert blocked.prompt_feedback and blocked.prompt_feedback.block_reason_message and blocked.candidates is None
