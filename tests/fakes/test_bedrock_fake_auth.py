"""The fake Bedrock Runtime's authentication (SigV4 as botocore signs it, raw signatures, session tokens, clock
skew, Bedrock API keys) and its failure knobs (throttling, AWS exceptions, dropped connections, delays)."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import orjson
import pytest
import yarl
from botocore.exceptions import ClientError, HTTPClientError  # type: ignore[import-untyped]

from tests.fakes.bedrock_client import (
    ACCESS_KEY,
    CLAUDE,
    REGION,
    SECRET_KEY,
    call,
    error_code,
    path_of,
    signed_post,
    user,
)
from tests.fakes.bedrock_upstream import (
    FakeBedrock,
    fake_bedrock,
)

pytestmark = pytest.mark.usefixtures("no_aws_environment")  # no AWS configuration of the machine


# --- authentication -----------------------------------------------------------------------------------------------

async def test_wrong_secret_key_is_an_invalid_signature(fake: FakeBedrock) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", {"secret_key": "not-the-secret"}, modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "The request signature we calculated does not match" in caught.value.response["Error"]["Message"]
    assert fake.requests[0].auth_error == "InvalidSignatureException"


@pytest.mark.parametrize(("options", "code"), [
    ({"access_key": "AKIDUNKNOWN"}, "UnrecognizedClientException"),
    ({"region": "us-east-1"}, "InvalidSignatureException"),
    ({"session_token": "unexpected"}, "UnrecognizedClientException"),
])
async def test_credential_scope_and_key_are_checked(fake: FakeBedrock, options: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", options, modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_session_token() -> None:
    async with fake_bedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token="tok-123",
                            region=REGION) as fake:
        ok = await call(fake, "converse", {"session_token": "tok-123"}, modelId=CLAUDE, messages=[user("hi")])
        assert ok["stopReason"] == "end_turn"
        assert "x-amz-security-token" in fake.requests[0].signed_headers
        for options in ({}, {"session_token": "tok-other"}):
            with pytest.raises(ClientError) as caught:
                await call(fake, "converse", options, modelId=CLAUDE, messages=[user("hi")])
            assert error_code(caught.value) == "UnrecognizedClientException"
        fake.token_expired = True
        with pytest.raises(ClientError) as expired:
            await call(fake, "converse", {"session_token": "tok-123"}, modelId=CLAUDE, messages=[user("hi")])
        assert error_code(expired.value) == "ExpiredTokenException"


@pytest.mark.parametrize(("offset", "message"), [(600, "Signature expired"), (-600, "Signature not yet current")])
async def test_clock_skew_over_five_minutes(fake: FakeBedrock, offset: float, message: str) -> None:
    fake.clock_offset_s = offset
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "InvalidSignatureException"
    assert caught.value.response["Error"]["Message"].startswith(message)
    fake.clock_offset_s = offset / 3
    assert (await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")]))["stopReason"] == "end_turn"


async def test_raw_signature_checks(fake: FakeBedrock) -> None:
    path, body = path_of(CLAUDE, "converse"), orjson.dumps({"messages": [user("hi")]})
    status, _, _ = await signed_post(fake, path, body)
    assert status == 200
    status, headers, raw = await signed_post(fake, path, body, sent_body=body.replace(b"hi", b"yo"))
    assert status == 403 and headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert "The Canonical String for this request should have been" in orjson.loads(raw)["message"]
    sha = hashlib.sha256(body).hexdigest()
    status, _, _ = await signed_post(fake, path, body, headers={"x-amz-content-sha256": sha})
    assert status == 200 and "x-amz-content-sha256" in fake.requests[-1].signed_headers
    status, headers, raw = await signed_post(fake, path, body, headers={"x-amz-content-sha256": "0" * 64})
    assert status == 403 and "x-amz-content-sha256" in orjson.loads(raw)["message"]

    def drop_auth(headers: dict[str, str]) -> None:
        del headers["Authorization"]

    status, headers, raw = await signed_post(fake, path, body, change=drop_auth)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")

    def no_signature(headers: dict[str, str]) -> None:
        headers["Authorization"] = headers["Authorization"].rsplit(", Signature=", 1)[0]

    status, headers, raw = await signed_post(fake, path, body, change=no_signature)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")
    assert "requires 'Signature' parameter" in orjson.loads(raw)["message"]


async def test_bedrock_api_key_as_bearer(fake: FakeBedrock) -> None:
    fake.api_key = "bedrock-api-key-fake"
    url = yarl.URL(fake.endpoint + path_of(CLAUDE, "converse"), encoded=True)
    async with aiohttp.ClientSession() as session:
        for key, status in (("bedrock-api-key-fake", 200), ("wrong", 403)):
            async with session.post(url, json={"messages": [user("hi")]},
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == status


# --- failure knobs ------------------------------------------------------------------------------------------------

async def test_throttling_knob(fake: FakeBedrock) -> None:
    fake.fail_status, fake.fail_times = 429, 1
    with pytest.raises(ClientError) as caught:
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    assert error_code(caught.value) == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
    fake.fail_times = 1
    retried = await call(fake, "converse", {"attempts": 3}, modelId=CLAUDE, messages=[user("hi")])
    assert retried["ResponseMetadata"]["RetryAttempts"] == 1 and len(fake.requests) == 3


@pytest.mark.parametrize(("status", "error", "code"), [
    (400, None, "ValidationException"), (404, None, "ResourceNotFoundException"), (424, None, "ModelErrorException"),
    (500, None, "InternalServerException"), (503, None, "ServiceUnavailableException"),
    (0, "ModelNotReadyException", "ModelNotReadyException"),
])
async def test_fail_knobs_map_to_aws_exceptions(fake: FakeBedrock, status: int, error: str | None, code: str) -> None:
    fake.fail_status, fake.fail_error, fake.fail_times = status, error, 1
    with pytest.raises(ClientError) as caught:
        await call(fake, "invoke_model", modelId="cohere.embed-english-v3",
                   body=orjson.dumps({"texts": ["hi"], "input_type": "search_query"}))
    assert error_code(caught.value) == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == (status or 429)
    assert caught.value.response["Error"]["Message"]


async def test_drop_connection_and_delay(fake: FakeBedrock) -> None:
    fake.drop_connection = True
    with pytest.raises(HTTPClientError):
        await call(fake, "converse", modelId=CLAUDE, messages=[user("hi")])
    fake.drop_connection, fake.delay_s = False, 0.5
    with pytest.raises(HTTPClientError):
        await call(fake, "converse", {"read_timeout": 0.1}, modelId=CLAUDE, messages=[user("hi")])
