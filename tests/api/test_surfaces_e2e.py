"""The data plane's API surfaces other than the Responses API (``test_responses_e2e.py``) end to end, with the
official clients as a user runs them: embeddings, legacy completions, models, moderations, Anthropic token
counting, and unknown paths and wrong methods.

One real data plane (``create_app`` on a loopback socket, the limits gate, a spool) from a hand-built snapshot
with three providers: the built-in ``mock`` (what ``gatectl up`` serves: the Responses API translated to chat
completions), an ``openai`` provider pointing at the fake OpenAI server (the real ``OpenAIAdapter`` over loopback:
the Responses API passed through natively) and an ``anthropic`` provider pointing at the fake Anthropic server
(its own ``count_tokens``). Clients: ``openai.AsyncOpenAI`` (and the sync ``openai.OpenAI`` in a thread), the
``anthropic`` SDK and plain HTTP (``aiohttp``). Every assertion is about what the user sees (plus what
the fake upstream received, where the point is what the gateway forwarded).
"""

from __future__ import annotations

import asyncio
import base64
import struct

import aiohttp
import anthropic
import openai
import pytest

from tests.api.surfaces_world import FAKE_DIMENSIONS, MOCK_DIMENSIONS, World
from tests.fakes.anthropic_upstream import count_input_tokens
from tests.fakes.openai_upstream import embedding_vector, word_pieces


def float32(vector: list[float]) -> bytes:
    """A vector as the little-endian float32 the API's base64 form carries (JSON floats are float32 values
    printed to nine significant digits, so they compare equal only as float32)."""
    return struct.pack(f"<{len(vector)}f", *vector)


# -- 1. embeddings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "dimensions"), [("mock-embed", MOCK_DIMENSIONS), ("fake-embed", FAKE_DIMENSIONS)])
async def test_embeddings(world: World, client: openai.AsyncOpenAI, model: str, dimensions: int) -> None:
    one = await client.embeddings.create(model=model, input="The quick brown fox", encoding_format="float")
    assert len(one.data) == 1 and len(one.data[0].embedding) == dimensions
    assert one.usage.prompt_tokens > 0
    many = await client.embeddings.create(model=model, input=["first text", "second text"], encoding_format="float")
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding != many.data[1].embedding
    small = await client.embeddings.create(model=model, input="The quick brown fox", dimensions=4,
                                           encoding_format="float")
    assert len(small.data[0].embedding) == 4
    # The SDK's default asks for base64 and decodes it: the same float32 numbers as the float answer.
    decoded = await client.embeddings.create(model=model, input=["first text", "second text"])
    assert [float32(d.embedding) for d in decoded.data] == [float32(d.embedding) for d in many.data]
    explicit = await client.embeddings.create(model=model, input="The quick brown fox", encoding_format="base64")
    encoded = explicit.data[0].embedding
    assert isinstance(encoded, str)  # asked for explicitly: the SDK leaves it as the API sent it
    assert base64.b64decode(encoded) == float32(one.data[0].embedding)
    if model == "fake-embed":
        assert one.data[0].embedding == embedding_vector("The quick brown fox", FAKE_DIMENSIONS)
        sent = world.fake_requests("/v1/embeddings")
        assert sent[0]["model"] == "text-embedding-3-small" and sent[2]["dimensions"] == 4
        assert sent[3]["encoding_format"] == "base64"
    else:
        assert not world.fake.requests


async def test_embeddings_of_token_ids_on_the_openai_deployment(world: World, client: openai.AsyncOpenAI) -> None:
    answer = await client.embeddings.create(model="fake-embed", input=[[101, 2023, 102], [7, 8]],
                                            encoding_format="float")
    assert [len(d.embedding) for d in answer.data] == [FAKE_DIMENSIONS, FAKE_DIMENSIONS]
    assert answer.data[0].embedding == embedding_vector([101, 2023, 102], FAKE_DIMENSIONS)
    assert answer.usage.prompt_tokens == 5
    assert world.fake_requests("/v1/embeddings")[-1]["input"] == [[101, 2023, 102], [7, 8]]


async def test_sync_client_embeddings_in_a_thread(world: World) -> None:
    def run() -> list[list[float]]:
        with world.sync_client() as sync:
            return [d.embedding for d in sync.embeddings.create(model="fake-embed", input=["a b", "c d"]).data]

    vectors = await asyncio.to_thread(run)
    assert vectors == [embedding_vector("a b", FAKE_DIMENSIONS), embedding_vector("c d", FAKE_DIMENSIONS)]


# -- 2. legacy completions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "fake"])
async def test_completions(world: World, client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.completions.with_raw_response.create(model=model, prompt="Once upon a time", max_tokens=5)
    completion = raw.parse()
    assert completion.object == "text_completion" and len(completion.choices) == 1
    text = completion.choices[0].text
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and 0 < completion.usage.completion_tokens <= 5
    assert int(raw.headers["x-tollway-cost-usd-micros"]) > 0
    stream = await client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, stream=True)
    pieces = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in pieces), "usage only when the client asks for it"
    assert "".join(c.choices[0].text for c in pieces if c.choices) == text
    assert [c.choices[0].finish_reason for c in pieces if c.choices][-1] == "length"
    with_usage = await client.completions.create(model=model, prompt="Once upon a time", max_tokens=5, stream=True,
                                                 stream_options={"include_usage": True})
    last = [chunk async for chunk in with_usage][-1]
    assert last.usage is not None and last.usage.completion_tokens == completion.usage.completion_tokens
    if model == "fake":
        assert text == "".join(word_pieces(world.fake.reply)[:5])
        sent = world.fake_requests("/v1/completions")
        assert sent[0]["prompt"] == "Once upon a time" and sent[0]["model"] == "gpt-4o-mini"
        # The gateway asks for the usage chunk it charges by, and drops it for the client that did not ask.
        assert sent[1]["stream"] is True and sent[1]["stream_options"] == {"include_usage": True}
    else:
        assert text and " This is a mock completion of: Once upon a time".startswith(text)
        assert not world.fake.requests


# -- 3. models -------------------------------------------------------------------------------------------------


async def test_models_retrieve(client: openai.AsyncOpenAI) -> None:
    model = await client.models.retrieve("fake")
    assert model.id == "fake" and model.object == "model"
    listed = {m.id async for m in client.models.list()}
    assert {"mock", "fake", "mock-embed", "fake-embed", "claude"} <= listed
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    body = missing.value.response.json()
    assert "no-such-model" in body["error"]["message"] and body["error"]["code"] == "model_not_found"


# -- 4. moderations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock-moderation", "fake-moderation"])
async def test_moderations(world: World, client: openai.AsyncOpenAI, model: str) -> None:
    answer = await client.moderations.create(model=model, input=["I will kill you", "What a lovely day"])
    assert [r.flagged for r in answer.results] == [True, False]
    flagged = {name for name, on in answer.results[0].categories.model_dump(by_alias=True).items() if on}
    assert answer.results[0].category_scores.violence > 0.5 > answer.results[1].category_scores.violence
    assert not any(answer.results[1].categories.model_dump().values())
    if model == "fake-moderation":
        assert flagged == {"violence"}  # the fake's trigger word
        assert world.fake_requests("/v1/moderations")[0]["model"] == "omni-moderation-latest"
    else:
        assert flagged == {"violence", "harassment", "harassment/threatening"}
        assert not world.fake.requests


# -- 5. Anthropic token counting -----------------------------------------------------------------------------------


async def test_count_tokens_exact_and_estimate(world: World) -> None:
    client = anthropic.AsyncAnthropic(base_url=world.url, api_key=world.key, max_retries=0, timeout=10)
    try:
        messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "How many tokens is this?"}]
        raw = await client.messages.with_raw_response.count_tokens(
            model="claude", system="You count.", messages=messages)
        exact = await raw.parse()
        assert raw.headers["x-tollway-token-count"] == "exact"
        received = [r for r in world.claude.requests if r.path == "/v1/messages/count_tokens"]
        assert len(received) == 1 and received[0].body["model"] == "claude-3-5-haiku-20241022"
        assert exact.input_tokens == count_input_tokens(received[0].body)
        assert exact.input_tokens == count_input_tokens({"system": "You count.", "messages": messages})
        raw = await client.messages.with_raw_response.count_tokens(model="mock", system="You count.",
                                                                   messages=messages)
        estimate = await raw.parse()
        assert raw.headers["x-tollway-token-count"] == "estimate" and estimate.input_tokens > 0
        assert len(world.claude.requests) == 1
        assert [r.cost_micros for r in world.spool.records] == [0, 0], "counting tokens is free"
    finally:
        await client.close()


# -- 6. unknown paths and wrong methods ----------------------------------------------------------------------------


async def test_unknown_path_and_wrong_method(world: World, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await client.get("/nope", cast_to=object)
    assert "/v1/nope" in missing.value.message and missing.value.code == "unknown_url"
    async with aiohttp.ClientSession() as http:
        async with http.get(world.url + "/v1/responses", headers={"Authorization": f"Bearer {world.key}"}) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST"
            body = await resp.json()
            assert "GET" in body["error"]["message"] and "/v1/responses" in body["error"]["message"]
        async with http.post(world.url + "/v1/messages/nope", data=b"{}") as resp:
            assert resp.status == 404 and resp.content_type == "application/json"
            body = await resp.json()
            assert body["type"] == "error" and "/v1/messages/nope" in body["error"]["message"]
    anthropic_client = anthropic.AsyncAnthropic(base_url=world.url, api_key=world.key, max_retries=0, timeout=10)
    try:
        with pytest.raises(anthropic.NotFoundError) as refused:
            await anthropic_client.get("/v1/messages/batches/nope", cast_to=object)
        assert "/v1/messages/batches/nope" in refused.value.message
    finally:
        await anthropic_client.close()
