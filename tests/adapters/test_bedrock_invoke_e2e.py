"""The official openai and anthropic SDKs through a real data plane to the fake Bedrock Runtime on loopback,
beyond the chat completions: how the data plane authenticates (a Bedrock API key, temporary credentials
refreshed before they expire, a shared-credentials-file profile), the Anthropic SDK's messages and tool use
(InvokeModel, ConverseStream) and embeddings (Titan, Cohere: InvokeModel).

The data plane finds its AWS credentials the way it would in production, through botocore's standard chain, here
given environment variables only (no config file, no instance metadata: nothing reaches past loopback); the fake
checks every request's SigV4 signature with botocore. Every test also checks, at teardown, that neither the secret
key nor the session token appears in any log record (captured at DEBUG, botocore's included) — and the error
bodies a client sees are checked where failures are provoked.
"""

from __future__ import annotations

import base64
import datetime
import struct

import openai
import pytest

from tests.adapters.bedrock_world import ACCESS_KEY, World, assert_no_secret
from tests.fakes.bedrock_upstream import embedding_vector, text_tokens


@pytest.fixture
def world(bedrock_world: World) -> World:
    """``bedrock_world`` (conftest.py): the data plane in front of the fake Bedrock Runtime."""
    return bedrock_world


# --- credentials --------------------------------------------------------------------------------------------------

async def test_bedrock_api_key(world: World) -> None:
    completion = await world.client().chat.completions.create(
        model="nova-by-key", messages=[{"role": "user", "content": "Hello"}])
    assert completion.choices[0].message.content == world.fake.reply
    received = world.fake.requests[-1]
    assert received.auth_error is None and received.credential == ""  # a bearer key, not a signature
    assert "X-Amz-Security-Token" not in received.headers


async def test_temporary_credentials_are_refreshed_before_they_expire(world: World,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Environment credentials with an expiry are refreshable: botocore re-reads the variables when asked to.
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=4)  # inside REFRESH_BEFORE_S
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", soon.isoformat())
    client = world.client()
    await client.chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert world.fake.requests[-1].credential.startswith(f"{ACCESS_KEY}/")
    rotated = ("AKIAE2EROTATEDKEY002", "rotatedSecret/0123456789abcdefghijklmnop", "rotatedSessionToken==")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    for name, value in zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), rotated, strict=True):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", later.isoformat())
    world.fake.access_key, world.fake.secret_key, world.fake.session_token = rotated
    for _ in range(2):  # refreshed once, then served from the cache
        completion = await client.chat.completions.create(model="nova",
                                                          messages=[{"role": "user", "content": "Hello"}])
        assert completion.choices[0].message.content == world.fake.reply
        assert world.fake.requests[-1].credential.startswith(f"{rotated[0]}/")
        assert world.fake.requests[-1].auth_error is None


async def test_shared_credentials_file_profile(world: World) -> None:
    profile = ("AKIAE2EPROFILEKEY003", "profileSecret/0123456789abcdefghijklmno")
    world.credentials_file.write_text(f"[e2e]\naws_access_key_id = {profile[0]}\n"
                                      f"aws_secret_access_key = {profile[1]}\n")
    world.fake.access_key, world.fake.secret_key, world.fake.session_token = profile[0], profile[1], None
    # An explicit profile wins over the environment's credentials, as for every AWS SDK.
    completion = await world.client().chat.completions.create(
        model="nova-by-profile", messages=[{"role": "user", "content": "Hello"}])
    assert completion.choices[0].message.content == world.fake.reply
    assert world.fake.requests[-1].credential.startswith(f"{profile[0]}/")
    assert "X-Amz-Security-Token" not in world.fake.requests[-1].headers
    with pytest.raises(openai.InternalServerError) as info:
        await world.client().chat.completions.create(model="nova-no-profile",
                                                     messages=[{"role": "user", "content": "Hello"}])
    assert "profile 'absent' is not configured" in info.value.message
    assert_no_secret(info.value.body)
    assert profile[1] not in str(info.value.body)


# --- the Anthropic SDK --------------------------------------------------------------------------------------------

async def test_anthropic_sdk_messages(world: World) -> None:
    client = world.anthropic()
    try:
        message = await client.messages.create(model="claude", max_tokens=100, system="Be brief.",
                                               messages=[{"role": "user", "content": "Hello"}])
        assert message.content[0].type == "text" and message.content[0].text == world.fake.reply
        assert message.stop_reason == "end_turn" and message.usage.output_tokens == text_tokens(world.fake.reply)
        assert world.operations() == ["invoke"] and world.fake.requests[-1].body["max_tokens"] == 100
        async with client.messages.stream(model="claude", max_tokens=100,
                                          messages=[{"role": "user", "content": "Hello"}]) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text == world.fake.reply and final.stop_reason == "end_turn"
        assert final.usage.output_tokens == text_tokens(world.fake.reply)
        assert world.operations() == ["invoke", "ConverseStream"]
        assert world.fake.requests[-1].body["inferenceConfig"]["maxTokens"] == 100
    finally:
        await client.close()


async def test_anthropic_sdk_tool_use(world: World) -> None:
    world.fake.tool_input = {"city": "Oslo"}
    client = world.anthropic()
    try:
        message = await client.messages.create(
            model="claude", max_tokens=100, tool_choice={"type": "any"},
            tools=[{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            messages=[{"role": "user", "content": "Weather in Oslo?"}])
        assert message.stop_reason == "tool_use"
        block = message.content[-1]
        assert block.type == "tool_use" and block.name == "weather" and block.input == {"city": "Oslo"}
    finally:
        await client.close()


# --- embeddings ---------------------------------------------------------------------------------------------------

async def test_titan_embeddings(world: World) -> None:
    client = world.client()
    texts = ["first text", "the second text", "third"]
    answer = await client.embeddings.create(model="titan", input=texts, encoding_format="float")
    assert [d.index for d in answer.data] == [0, 1, 2]
    for text, item in zip(texts, answer.data, strict=True):
        assert item.embedding == pytest.approx(embedding_vector(text, 512))  # the deployment's dimensions
    assert answer.usage.prompt_tokens == sum(text_tokens(t) for t in texts) == answer.usage.total_tokens
    assert world.operations() == ["invoke"] * 3, "Titan embeds one text per call"
    assert sorted(r.body["inputText"] for r in world.fake.requests) == sorted(texts)
    assert all(r.body["dimensions"] == 512 for r in world.fake.requests)
    small = await client.embeddings.create(model="titan", input="first text", dimensions=256)
    assert len(small.data[0].embedding) == 256
    # base64 as OpenAI encodes it: the SDK's default, decoded by the SDK; and asked for explicitly.
    decoded = await client.embeddings.create(model="titan", input="first text")
    assert decoded.data[0].embedding == pytest.approx(embedding_vector("first text", 512))
    raw = await client.embeddings.create(model="titan", input="first text", encoding_format="base64")
    packed = base64.b64decode(str(raw.data[0].embedding))
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == embedding_vector("first text", 512)
    assert world.spool.records[-1].input_tokens == text_tokens("first text")


async def test_cohere_embeddings(world: World) -> None:
    texts = ["alpha beta", "gamma"]
    raw = await world.client().embeddings.with_raw_response.create(model="cohere", input=texts,
                                                                   encoding_format="float")
    answer = raw.parse()
    assert [item.embedding for item in answer.data] == [pytest.approx(embedding_vector(t, 1024)) for t in texts]
    assert answer.usage.prompt_tokens == sum(text_tokens(t) for t in texts)  # from the token-count header
    assert world.operations() == ["invoke"]
    assert world.fake.requests[0].body == {"texts": texts, "input_type": "search_document"}
    assert int(raw.headers["x-tollway-cost-usd-micros"]) >= 0 and world.spool.records[-1].input_tokens > 0


async def test_embeddings_failure_of_one_call_fails_the_request(world: World) -> None:
    world.fake.fail_status, world.fake.fail_times = 400, 1
    with pytest.raises(openai.BadRequestError) as info:
        await world.client().embeddings.create(model="titan", input=["a", "b", "c", "d"])
    assert "Malformed input request" in info.value.message
