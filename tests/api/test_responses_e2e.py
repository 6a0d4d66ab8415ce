"""The data plane's Responses API end to end, with the official clients as a user runs them: created, streamed,
translated on the mock or passed through natively, structured output, function tools, ``previous_response_id``,
hosted tools refused, a stream whose upstream dies, and the OpenAI Agents SDK and LangChain on top of it.

One real data plane (``create_app`` on a loopback socket, the limits gate, a spool) from a hand-built snapshot
with three providers: the built-in ``mock`` (what ``gatectl up`` serves: the Responses API translated to chat
completions), an ``openai`` provider pointing at the fake OpenAI server (the real ``OpenAIAdapter`` over loopback:
the Responses API passed through natively) and an ``anthropic`` provider pointing at the fake Anthropic server
(its own ``count_tokens``). Clients: ``openai.AsyncOpenAI`` (and the sync ``openai.OpenAI`` in a thread), the
OpenAI Agents SDK and LangChain. Every assertion is about what the user sees (plus what
the fake upstream received, where the point is what the gateway forwarded).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import openai
import pydantic
import pytest
from openai.types.responses import FunctionToolParam

from dataplane.api.responses import ResponseIds
from tests.api.surfaces_world import MOCK_DIMENSIONS, World

WEATHER_TOOL: FunctionToolParam = {
    "type": "function", "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}, "strict": True}
CITY_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["city", "temperature_c", "sunny"],
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer", "minimum": -50, "maximum": 60},
                   "sunny": {"type": "boolean"}}}


class CityWeather(pydantic.BaseModel):
    """What ``CITY_SCHEMA`` says, as a model (so an answer is checked against it)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    city: str
    temperature_c: int = pydantic.Field(ge=-50, le=60)
    sunny: bool


def extra(model: Any, name: str) -> Any:
    """A field the installed SDK's schema does not declare (the API still sends it)."""
    return (model.model_extra or {}).get(name)


# -- 1. the Responses API ----------------------------------------------------------------------------------------


async def test_responses_create_translated_on_the_mock(world: World, client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(
        model="mock", instructions="Answer briefly.", input="Tell me about lighthouses", max_output_tokens=200)
    response = raw.parse()
    assert raw.headers["x-tollway-deployment"] == "mock-chat"
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and not response.id.startswith("resp_tw")
    assert extra(response, "store") is False  # served statelessly: nothing to continue from
    assert response.instructions == "Answer briefly." and response.max_output_tokens == 200
    assert response.output[0].type == "message"
    assert "Tell me about lighthouses" in response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert int(raw.headers["x-tollway-cost-usd-micros"]) > 0
    assert not world.fake.requests


async def test_responses_input_items_and_max_output_tokens_on_the_mock(client: openai.AsyncOpenAI) -> None:
    # Items as clients send them back: easy messages, content parts, and an earlier answer's message item.
    items: list[Any] = [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [{"type": "input_text", "text": "First question"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "First answer"}]},
        {"role": "user", "content": "Second question about tides"}]
    response = await client.responses.create(model="mock", input=items)
    assert response.status == "completed"
    assert "Second question about tides" in response.output_text  # the mock echoes the last user turn
    cut = await client.responses.create(model="mock", input="Say a great many words about the sea", max_output_tokens=3)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage is not None and 0 < cut.usage.output_tokens <= 3


@pytest.mark.parametrize("model", ["mock", "fake"])
async def test_responses_stream_events(world: World, client: openai.AsyncOpenAI, model: str) -> None:
    stream = await client.responses.create(model=model, input="Stream me a short reply", stream=True)
    kinds: list[str] = []
    deltas: list[str] = []
    final: Any = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert {"response.output_item.added", "response.content_part.added", "response.output_text.done",
            "response.output_item.done"} <= set(kinds)
    assert final is not None and final.output_text == "".join(deltas)
    assert final.usage is not None and final.usage.output_tokens > 0
    record = world.spool.records[-1]
    assert (record.input_tokens, record.output_tokens) == (final.usage.input_tokens, final.usage.output_tokens)
    if model == "fake":
        assert final.id.startswith("resp_tw") and final.output_text == world.fake.reply
        sent = world.fake_requests("/v1/responses")[-1]
        assert sent["stream"] is True and sent["input"] == "Stream me a short reply"
    else:
        assert "Stream me a short reply" in final.output_text


@pytest.mark.parametrize("model", ["mock", "fake"])
async def test_responses_stream_helper_final_response(world: World, client: openai.AsyncOpenAI, model: str) -> None:
    async with client.responses.stream(model=model, input="Helper stream please", instructions="Be kind.") as stream:
        texts = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(texts) and texts
    if model == "fake":
        assert final.id.startswith("resp_tw")
        assert world.fake_requests("/v1/responses")[-1]["instructions"] == "Be kind."


async def test_responses_native_passthrough_to_the_openai_deployment(world: World,
                                                                     client: openai.AsyncOpenAI) -> None:
    raw = await client.responses.with_raw_response.create(
        model="fake", instructions="Be brief.", input=[{"role": "user", "content": "Hi there"}],
        max_output_tokens=64, metadata={"ticket": "42"})
    response = raw.parse()
    assert raw.headers["x-tollway-deployment"] == "fake-chat"
    sent = world.fake_requests("/v1/responses")
    assert len(sent) == 1, "the Responses body goes to the upstream's /v1/responses, not translated to chat"
    assert not world.fake_requests("/v1/chat/completions")
    assert sent[0]["model"] == "gpt-4o-mini" and sent[0]["instructions"] == "Be brief."
    assert sent[0]["input"] == [{"role": "user", "content": "Hi there"}] and sent[0]["max_output_tokens"] == 64
    assert sent[0]["metadata"] == {"ticket": "42"}
    assert response.id.startswith("resp_tw")
    upstream_id = next(iter(world.fake.stored))
    assert upstream_id not in response.id
    assert response.output_text == world.fake.reply and response.metadata == {"ticket": "42"}
    assert response.usage is not None and response.usage.input_tokens > 0
    record = world.spool.records[-1]  # charged what the upstream reported
    assert (record.input_tokens, record.output_tokens) == (response.usage.input_tokens, response.usage.output_tokens)
    assert int(raw.headers["x-tollway-cost-usd-micros"]) == record.cost_micros > 0


async def test_responses_json_schema_output_validates(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="mock", input="What is the weather like in Lisbon?",
        text={"format": {"type": "json_schema", "name": "city_weather", "schema": CITY_SCHEMA, "strict": True}})
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"
    parsed = CityWeather.model_validate_json(response.output_text)  # valid JSON, valid against the schema
    assert parsed.city == "Lisbon"
    # The SDK's structured-output helper: a pydantic model in, a parsed instance out.
    typed = await client.responses.parse(model="mock", input="What is the weather like in Rome?",
                                         text_format=CityWeather)
    assert isinstance(typed.output_parsed, CityWeather) and typed.output_parsed.city == "Rome"


async def test_responses_function_tool_loop_on_the_mock(client: openai.AsyncOpenAI) -> None:
    question = "What's the weather in Paris? Call the tool."
    first = await client.responses.create(model="mock", input=question, tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id
    # The next turn as an agent loop sends it: the question, the call item as received, its output.
    turn: list[Any] = [{"role": "user", "content": question}, call.model_dump(exclude_none=True),
                       {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees and sunny"}]
    second = await client.responses.create(model="mock", tools=[WEATHER_TOOL], input=turn)
    assert second.status == "completed"
    assert not [item for item in second.output if item.type == "function_call"]
    assert "18 degrees and sunny" in second.output_text
    # The same call, streamed: the arguments arrive as deltas and the final response holds the call.
    async with client.responses.stream(model="mock", input=question, tools=[WEATHER_TOOL]) as stream:
        arguments = [event.delta async for event in stream if event.type == "response.function_call_arguments.delta"]
        final = await stream.get_final_response()
    streamed = [item for item in final.output if item.type == "function_call"]
    assert len(streamed) == 1 and streamed[0].name == "get_weather"
    assert "".join(arguments) == streamed[0].arguments and json.loads(streamed[0].arguments) == {"city": "Paris"}


async def test_previous_response_id_on_the_native_route(world: World, client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="fake", input="Remember the number seven.")
    second = await client.responses.create(model="fake", input="Which number?", previous_response_id=first.id)
    assert second.id.startswith("resp_tw") and second.id != first.id
    assert second.previous_response_id == first.id  # the id the client sent, not the upstream's
    assert second.output_text == world.fake.reply
    sent = world.fake_requests("/v1/responses")
    upstream_first = next(ident for ident, kept in world.fake.stored.items() if kept.context[0]["content"] ==
                          "Remember the number seven.")
    assert sent[1]["previous_response_id"] == upstream_first  # the upstream's own id, unwrapped
    # The upstream answered with the whole context: more input than the follow-up alone.
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    # An id the gateway did not issue is refused before any upstream sees it.
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="fake", input="x", previous_response_id="resp_" + "0" * 48)
    assert refused.value.code == "previous_response_not_found" and refused.value.param == "previous_response_id"
    assert len(world.fake_requests("/v1/responses")) == 2


async def test_previous_response_id_refused_on_the_translated_route(world: World,
                                                                    client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="mock", input="Remember seven.")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="mock", input="Which number?", previous_response_id=first.id)
    assert refused.value.status_code == 400 and refused.value.param == "previous_response_id"
    assert "whole conversation" in refused.value.message
    # A native answer's id cannot be continued on a translated route either: it is held by another deployment.
    native = await client.responses.create(model="fake", input="Remember seven.")
    with pytest.raises(openai.BadRequestError) as elsewhere:
        await client.responses.create(model="mock", input="Which number?", previous_response_id=native.id)
    assert elsewhere.value.param == "previous_response_id" and "fake-chat" in elsewhere.value.message


@pytest.mark.parametrize("model", ["mock", "fake"])
async def test_hosted_tool_refused(world: World, client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model=model, input="Search the web for tides", tools=[{"type": "web_search"}])
    assert refused.value.status_code == 400
    assert "web_search" in refused.value.message and refused.value.param == "tools[0].type"
    assert not world.fake.requests


async def test_sync_client_responses_in_a_thread(world: World) -> None:
    def run() -> tuple[str, str]:
        with world.sync_client() as sync:
            mock = sync.responses.create(model="mock", input="Hello from a thread")
            fake = sync.responses.create(model="fake", input="Hello from a thread")
            return mock.output_text, fake.id

    text, fake_id = await asyncio.to_thread(run)
    assert "Hello from a thread" in text and fake_id.startswith("resp_tw")


async def test_previous_response_id_streamed_echoes_the_wrapped_id(client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="fake", input="Remember the number seven.")
    async with client.responses.stream(model="fake", input="Which number?", previous_response_id=first.id) as stream:
        created = [event.response async for event in stream if event.type == "response.created"]
        final = await stream.get_final_response()
    assert [r.previous_response_id for r in created] == [first.id]
    assert final.previous_response_id == first.id and final.id.startswith("resp_tw")


async def test_previous_response_id_after_failover_goes_to_the_deployment_that_answered(
        world: World, client: openai.AsyncOpenAI) -> None:
    world.backup.fail_status, world.backup.fail_times = 500, 1  # the first candidate fails, the second answers
    raw = await client.responses.with_raw_response.create(model="pair", input="Remember the number seven.")
    first = raw.parse()
    assert raw.headers["x-tollway-deployment"] == "fake-chat" and raw.headers["x-tollway-attempts"] == "2"
    second = await client.responses.create(model="pair", input="Which number?", previous_response_id=first.id)
    assert second.output_text == world.fake.reply
    assert [r.body.get("previous_response_id") for r in world.fake.requests] == [None, next(iter(world.fake.stored))]
    world.backup.fail_times = 1
    async with client.responses.stream(model="pair", input="Streamed, after failover") as stream:
        streamed = await stream.get_final_response()
    follow = await client.responses.create(model="pair", input="And now?", previous_response_id=streamed.id)
    assert follow.status == "completed" and world.fake.requests[-1].body["previous_response_id"] in world.fake.stored


@pytest.mark.pure
def test_every_response_id_the_gateway_issues_routes_back() -> None:
    # The ids' tags are binary: about one in twenty holds a NUL byte, which once made the id unreadable (a
    # follow-up refused as "not found" at random). Thousands of ids make that certain to be exercised.
    ids = ResponseIds("a shared data-plane token")
    for i in range(3000):
        upstream = f"resp_{secrets.token_hex(24)}"
        wrapped = ids.wrap(f"deployment-{i % 7}", upstream)
        assert ids.unwrap(wrapped) == (f"deployment-{i % 7}", upstream), wrapped
    assert ResponseIds("another region's token").unwrap(wrapped) is None
    assert ids.unwrap(wrapped[:-2]) is None and ids.unwrap("resp_tw") is None


# -- 2. a Responses stream whose upstream dies ------------------------------------------------------------------


@pytest.mark.parametrize(("model", "deployment"), [("fake", "fake-chat"), ("fake-translated", "fake-chat-only")])
async def test_responses_stream_upstream_dies_midway(world: World, client: openai.AsyncOpenAI, model: str,
                                                     deployment: str) -> None:
    # Native: the upstream's Responses events; translated: chat chunks, made into Responses events by the gateway.
    # Either way the socket closes after the first text delta.
    world.fake.die_after_chunks = 5 if model == "fake" else 2
    stream = await client.responses.create(model=model, input="This stream will break", stream=True)
    events: list[Any] = []
    with pytest.raises(openai.APIError) as failed:
        async for event in stream:
            events.append(event)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and "response.output_text.delta" in kinds
    assert kinds.count("response.created") == 1 and "response.completed" not in kinds
    numbers = [event.sequence_number for event in events]
    assert numbers == list(range(len(numbers))), "one stream, numbered in order"
    ids = {event.response.id for event in events if hasattr(event, "response")}
    assert len(ids) == 1, f"every lifecycle event is about the one response: {ids}"
    if model == "fake":
        assert ids.pop().startswith("resp_tw")
    else:
        assert kinds[-1] == "response.failed" and events[-1].response.status == "failed"
    assert "closed the connection" in failed.value.message
    record = world.spool.records[-1]
    assert record.route == model and record.deployment == deployment and record.stream
    assert record.status == 200 and record.error_type == "stream_aborted"
    assert record.cost_micros > 0 and record.input_tokens > 0, "a stream cut short is still charged"


# -- 3. the OpenAI Agents SDK ------------------------------------------------------------------------------------


async def test_agents_sdk_runs_a_tool_loop_on_the_mock(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")  # else the SDK exports traces to a public address
    import agents
    from agents.models import _openai_shared

    agents.set_tracing_disabled(True)
    monkeypatch.setattr(_openai_shared, "_default_openai_client", _openai_shared.get_default_openai_client())
    client = world.async_client()
    try:
        agents.set_default_openai_client(client, use_for_tracing=False)
        calls: list[str] = []

        @agents.function_tool
        def get_weather(city: str) -> str:
            """The current weather in a city."""
            calls.append(city)
            return f"The weather in {city} is 21 degrees and sunny."

        agent = agents.Agent(name="forecaster", instructions="You answer weather questions.", model="mock",
                             tools=[get_weather])
        result = await agents.Runner.run(agent, "What's the weather in Paris? Call the tool.")
        assert calls == ["Paris"]
        assert "21 degrees and sunny" in str(result.final_output)
        # Two model turns (the call, then the answer quoting the result), both served by the mock.
        assert [(r.deployment, r.stream) for r in world.spool.records] == [("mock-chat", False)] * 2
        streamed = agents.Runner.run_streamed(agent, "What's the weather in Lyon? Call the tool.")
        kinds = {event.type async for event in streamed.stream_events()}
        assert "raw_response_event" in kinds and calls == ["Paris", "Lyon"]
        assert "21 degrees and sunny" in str(streamed.final_output) and "Lyon" in str(streamed.final_output)
    finally:
        await client.close()


# -- 4. LangChain --------------------------------------------------------------------------------------------------


async def test_langchain_responses_tool_call_and_embeddings(world: World) -> None:
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    chat = ChatOpenAI(model="mock", base_url=world.url + "/v1", api_key=world.key, use_responses_api=True,
                      max_retries=0, timeout=10)
    message = await chat.bind_tools([dict(WEATHER_TOOL)]).ainvoke("What's the weather in Paris?")
    assert [(call["name"], call["args"]) for call in message.tool_calls] == [("get_weather", {"city": "Paris"})]
    # base_url and api_key are the fields' aliases, what users pass; the pydantic plugin knows only the names.
    embeddings = OpenAIEmbeddings(  # type: ignore[call-arg]
        model="mock-embed", base_url=world.url + "/v1", api_key=world.key, tiktoken_enabled=False,
        check_embedding_ctx_length=False, max_retries=0)
    vectors = await embeddings.aembed_documents(["tide tables", "lighthouse keepers"])
    assert len(vectors) == 2 and all(len(v) == MOCK_DIMENSIONS for v in vectors)
    assert vectors[0] != vectors[1]
    assert [r.route for r in world.spool.records] == ["mock", "mock-embed"]
