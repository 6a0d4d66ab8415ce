"""The official openai SDK through a real data plane to the fake Gemini API and Vertex AI, on authentication and
failure: Vertex access tokens (fetched, reused, refetched, refreshed ahead of expiry, refused), upstream errors and
failover, streams cut mid-way, and credentials kept out of what a client sees.

How the providers authenticate, and the check at teardown that no credential reached a log record: the
``google_world`` fixture (``conftest.py``), as ``test_google_chat_e2e.py`` describes.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import openai
import pytest

from dataplane.snapshot.runtime import Provider
from dataplane.upstream.adapters.google_auth import REFRESH_BEFORE_S, AccessTokens
from tests.adapters.google_world import (
    API_KEY,
    CHAT_MODELS,
    LOCATION,
    PROJECT,
    WRONG_KEY,
    World,
    assert_no_secret,
    record,
)


@pytest.fixture
def world(google_world: World) -> World:
    """``google_world`` (conftest.py): the data plane in front of the fake Gemini API and Vertex AI."""
    return google_world


# --- Vertex access tokens ------------------------------------------------------------------------------------------

async def test_vertex_token_is_fetched_once_and_reused(world: World) -> None:
    for _ in range(3):
        await world.client().chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert len(world.vertex.token_requests) == 1
    assert len({r.headers["Authorization"] for r in world.vertex.requests}) == 1


async def test_vertex_token_expired_while_idle_is_refetched(world: World) -> None:
    world.vertex.token_lifetime_s = 1
    client = world.client()
    await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    await asyncio.sleep(1.2)  # past the token's lifetime
    second = await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert second.choices[0].message.content == world.vertex.reply
    assert len(world.vertex.token_requests) == 2
    first_token, second_token = (r.headers["Authorization"] for r in world.vertex.requests)
    assert first_token != second_token


async def test_vertex_token_refused_by_google_is_replaced_once(world: World) -> None:
    client = world.client()
    await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    world.vertex.expire_tokens()  # the cache still thinks its token is good
    second = await client.chat.completions.create(model="vflash", messages=[{"role": "user", "content": "Hi"}])
    assert second.choices[0].message.content == world.vertex.reply
    assert len(world.vertex.token_requests) == 2


async def test_vertex_token_is_refreshed_ahead_of_expiry_in_the_background(world: World) -> None:
    assert world.vertex.credentials_file is not None
    now = [1000.0]
    tokens = AccessTokens(clock=lambda: now[0])
    provider = Provider(name="vertex", type="vertex", base_url=world.vertex.base_url, region="eu",
                        connect_timeout_s=1, read_timeout_s=1, api_version="", mock_delay_ms=0,
                        mock_tokens_per_second=0, credential=str(world.vertex.credentials_file),
                        credential_env="TEST_VERTEX_SA", gcp_project=PROJECT, gcp_location=LOCATION)
    try:
        first = await tokens.get(provider)
        assert len(world.vertex.token_requests) == 1
        now[0] += world.vertex.token_lifetime_s - REFRESH_BEFORE_S + 1  # inside the refresh window, still valid
        assert await tokens.get(provider) == first, "a request never waits while a valid token exists"
        for _ in range(200):  # the refresh runs in a thread, started by that request
            if len(world.vertex.token_requests) == 2 and await tokens.get(provider) != first:
                break
            await asyncio.sleep(0.01)
        assert len(world.vertex.token_requests) == 2
        assert await tokens.get(provider) != first
        assert len(world.vertex.token_requests) == 2, "one refresh per window"
    finally:
        await tokens.aclose()


async def test_vertex_variable_not_set_names_it(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="vflash-unset", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and "TEST_VERTEX_SA_UNSET" in str(failed.value.body)


async def test_vertex_untrusted_service_account_is_an_auth_failure(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="vflash-untrusted",
                                                     messages=[{"role": "user", "content": "x"}])
    body = str(failed.value.body)
    assert failed.value.status_code == 502
    assert "TEST_VERTEX_SA_UNTRUSTED" in body and "access token" in body
    assert_no_secret(world, body)
    assert not world.vertex.requests, "no request without a token"


# --- failures -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", CHAT_MODELS)
async def test_upstream_429_is_the_clients_429_with_retry_after(world: World, model: str) -> None:
    fake = world.fake(model)
    fake.fail_status, fake.fail_times = 429, 5
    with pytest.raises(openai.RateLimitError) as limited:
        await world.client().chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    if model == "flash":  # the Gemini API says how long in RetryInfo; Vertex does not
        assert limited.value.response.headers["retry-after"] == str(fake.retry_delay_s)
    assert_no_secret(world, limited.value.body)


async def test_upstream_429_fails_over_to_the_next_candidate(world: World) -> None:
    world.gemini.fail_status, world.gemini.fail_times = 429, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}])
    assert raw.parse().choices[0].message.content == world.vertex.reply
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:429"


@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_fails_over(world: World, status: int) -> None:
    world.gemini.fail_status, world.gemini.fail_times = status, 1
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}], stream=True)
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:5xx"


async def test_wrong_api_key_is_a_502_naming_no_secret(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        await world.client().chat.completions.create(model="flash-wrong-key",
                                                     messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    body = str(failed.value.body)
    assert "gemini-wrong-key" in body and "credential was refused" in body
    assert_no_secret(world, body, failed.value.response.headers)
    assert world.gemini.requests[-1].headers["x-goog-api-key"] == WRONG_KEY  # Google's 400 API_KEY_INVALID


async def test_stream_cut_mid_way_ends_with_an_error(world: World) -> None:
    world.gemini.die_after_chunks = 2
    text = ""
    with pytest.raises(openai.APIError):
        async for chunk in await world.client().chat.completions.create(
                model="flash", messages=[{"role": "user", "content": "Hello"}], stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text and world.gemini.reply.startswith(text) and text != world.gemini.reply
    assert record(world).usage_source in ("upstream", "estimated-aborted")


async def test_unknown_model_fails_over(world: World) -> None:
    world.gemini.models = frozenset()
    raw = await world.client().chat.completions.with_raw_response.create(
        model="flash-then-vertex", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-tollway-deployment"] == "vflash"
    assert raw.headers["x-tollway-route-reason"] == "failover:unsupported"


def test_provider_repr_hides_the_credential() -> None:
    provider = Provider(name="g", type="gemini", base_url="http://x", region="eu", connect_timeout_s=1,
                        read_timeout_s=1, api_version="", mock_delay_ms=0, mock_tokens_per_second=0,
                        credential=API_KEY)
    assert API_KEY not in repr(provider) and API_KEY not in repr(replace(provider, name="h"))
