"""The hub -> Responses API stream translations, checked against the openai SDK itself: every event validates as a
``ResponseStreamEvent`` (with no field the schema lacks), every Response in one as ``openai.types.responses.Response``,
and the SDK's own client, SSE decoder and stream accumulator read the stream back. Pure: the client talks to an
in-memory transport, no socket, no event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent

from dataplane.translate.hub_to_responses import ResponsesEventWriter, response_object
from tests.translate.responses_cases import (
    REQUEST,
    RESPONSES_USAGE,
    RID,
    USAGE,
    as_response,
    completion,
    extras,
    sdk_client,
)

pytestmark = pytest.mark.pure

EVENT: pydantic.TypeAdapter[ResponseStreamEvent] = pydantic.TypeAdapter(ResponseStreamEvent)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, logprobs: Any = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x-2025",
                         "choices": [choice]})


def usage_chunk(usage: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "gpt-x-2025",
                         "choices": [], "usage": usage})


def call(index: int, arguments: str, id_: str | None = None, name: str | None = None) -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        fn["name"] = name
    tool: dict[str, Any] = {"index": index, "function": fn}
    if id_ is not None:
        tool.update(id=id_, type="function")
    return {"tool_calls": [tool]}


def stream(request: dict[str, Any], chunks: list[bytes], end: tuple[str, str] | None = None) -> list[bytes]:
    writer = ResponsesEventWriter(RID, request, 1700000000)
    events = [event for payload in chunks for event in writer.feed(payload)]
    events += writer.finish() if end is None else writer.error(*end)
    assert writer.finish() == [] and writer.error("again", "server_error") == [], "a stream ends once"
    return events


def decoded(events: list[bytes]) -> list[dict[str, Any]]:
    """Each event framed as one SSE event whose name is its type, valid as the SDK's ``ResponseStreamEvent``."""
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(events):
        head, data, tail = raw.split(b"\n", 2)
        assert tail == b"\n" and head.startswith(b"event: ") and data.startswith(b"data: ")
        event = orjson.loads(data[6:])
        assert head[7:].decode() == event["type"] and event["sequence_number"] == n
        parsed = EVENT.validate_python(event)
        assert parsed.type == event["type"]
        if "response" in event:
            as_response(event["response"])
        assert extras(parsed) == known_extras(event["type"]), event
        out.append(event)
    return out


def known_extras(kind: str) -> list[str]:
    if kind == "error":
        return [".error"]  # the nested copy of the error, which the SDK raises on
    if kind in ("response.created", "response.in_progress", "response.completed", "response.incomplete",
                "response.failed"):
        return [".response.store"]
    return []


def sdk_stream(events: list[bytes]) -> Iterator[Any]:
    """The SDK's ``responses.stream`` (SSE decoder, ``ResponseStreamState``) reading ``events``."""
    client = sdk_client(200, "text/event-stream", b"".join(events))
    with client.responses.stream(model="gpt-x", input="Hi") as s:
        yield from s
        yield s.get_final_response()


TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
               "response.output_text.done", "response.content_part.done", "response.output_item.done"]


def test_stream_text() -> None:
    events = stream(REQUEST, [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                              chunk({"content": "lo!"}), chunk(finish="stop"), usage_chunk(USAGE)])
    kinds = [e["type"] for e in decoded(events)]
    assert kinds == [*TEXT_EVENTS, "response.completed"]
    *seen, final = list(sdk_stream(events))
    assert [e.type for e in seen] == kinds
    assert final.output_text == "Hello!" and final.status == "completed" and final.id == RID
    assert final.usage is not None and final.usage.to_dict() == RESPONSES_USAGE
    assert final.model == "gpt-x-2025" and final.instructions == "Be brief." and final.store is False


def test_stream_two_parallel_calls_interleaved() -> None:
    chunks = [chunk({"role": "assistant", "content": "Checking."}),
              chunk(call(0, "", "call_1", "weather")), chunk(call(1, '{"ci', "call_2", "weather")),
              chunk(call(0, '{"city":')), chunk(call(1, 'ty":"Rome"}')), chunk(call(0, '"Oslo"}')),
              chunk(finish="tool_calls"), usage_chunk(USAGE)]
    raw = stream(REQUEST, chunks)
    events = decoded(raw)
    assert [(e["type"], e.get("output_index")) for e in events[8:]] == [
        ("response.output_item.added", 1), ("response.output_item.added", 2),
        ("response.function_call_arguments.delta", 2), ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.delta", 2), ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1), ("response.output_item.done", 1),
        ("response.function_call_arguments.done", 2), ("response.output_item.done", 2),
        ("response.completed", None)]
    assert events[8]["item"] == {"type": "function_call", "id": "fc_0123abc_1", "call_id": "call_1",
                                 "name": "weather", "arguments": "", "status": "in_progress"}
    *_, final = list(sdk_stream(raw))
    calls = [(o.call_id, o.name, o.arguments, o.status) for o in final.output if o.type == "function_call"]
    assert calls == [("call_1", "weather", '{"city":"Oslo"}', "completed"),
                     ("call_2", "weather", '{"city":"Rome"}', "completed")]
    assert final.output_text == "Checking."
    # the same answer, not streamed, has the same output: ids and all
    assert events[-1]["response"]["output"] == response_object(completion({"content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        "tool_calls"), REQUEST, RID, 1)["output"]


def test_stream_text_after_a_call_opens_a_new_message() -> None:
    events = decoded(stream({"model": "m"}, [chunk(call(0, "{}", None, "weather")), chunk({"content": "Done."}),
                                             chunk(finish="stop")]))
    added = [(e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.added"]
    assert added == [(0, "function_call"), (1, "message")]
    final = events[-1]["response"]
    assert final["output"][0]["call_id"] == "call_0123abc_0", "a call without an upstream id gets a stable one"
    assert final["usage"] is None, "no usage chunk, no usage"


def test_stream_max_output_tokens_is_incomplete() -> None:
    events = stream({"model": "m", "max_output_tokens": 2}, [chunk({"content": "Once"}), chunk({"content": " upon"}),
                                                             chunk(finish="length"), usage_chunk(USAGE)])
    last = decoded(events)[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["max_output_tokens"] == 2
    seen: list[Any] = []
    with pytest.raises(RuntimeError, match=r"response\.completed"):
        seen.extend(sdk_stream(events))  # as with the API: the SDK's final response needs response.completed
    assert seen[-1].type == "response.incomplete" and seen[-1].response.output_text == "Once upon"


def test_stream_refusal_and_logprobs() -> None:
    lp = [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}]
    events = decoded(stream({"model": "m", "top_logprobs": 1}, [
        chunk({"content": "Hi"}, logprobs=lp), chunk({"refusal": "No."}), chunk(finish="stop")]))
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == [{"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi",
                                                                                     "logprob": -0.5}]}]
    refusal = [e for e in events if e["type"].startswith("response.refusal")]
    assert [(e["type"], e["content_index"]) for e in refusal] == [("response.refusal.delta", 1),
                                                                  ("response.refusal.done", 1)]
    content = events[-1]["response"]["output"][0]["content"]
    assert content[0]["logprobs"][0]["bytes"] == [72, 105]
    assert content[1] == {"type": "refusal", "refusal": "No."}


def test_stream_error_fails_the_response_and_the_sdk_raises() -> None:
    events = stream(REQUEST, [chunk({"content": "Par"}), chunk(call(0, '{"ci', "call_1", "weather"))],
                    ("upstream connection reset", "upstream_error"))
    parsed = decoded(events)
    failed, error = parsed[-2:]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream connection reset"}
    assert [(o["type"], o["status"]) for o in failed["response"]["output"]] == [("message", "completed"),
                                                                               ("function_call", "incomplete")]
    assert failed["response"]["output"][1]["arguments"] == '{"ci'
    assert {k: error[k] for k in ("type", "code", "message", "param")} == {
        "type": "error", "code": "upstream_error", "message": "upstream connection reset", "param": None}
    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="upstream connection reset"):
        seen.extend(sdk_stream(events))
    assert seen[-1].type == "response.failed"


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "server_error"])
def test_stream_error_before_any_chunk(code: str) -> None:
    parsed = decoded(stream({"model": "m"}, [], (f"failed: {code}", code)))
    assert [e["type"] for e in parsed] == ["response.created", "response.in_progress", "response.failed", "error"]
    assert parsed[2]["response"]["error"]["code"] == code and parsed[2]["response"]["output"] == []


def test_stream_empty_and_garbage() -> None:
    parsed = decoded(stream({"model": "m"}, [b"not json", b"[]", orjson.dumps({"choices": [{"index": 1, "delta": {
        "content": "other choice"}}]})]))
    assert [e["type"] for e in parsed] == ["response.created", "response.in_progress", "response.completed"]
    assert parsed[-1]["response"]["output"] == []


def test_stream_work_per_chunk_is_constant() -> None:
    """A delta's event does not grow with the text before it: nothing is re-serialized per chunk."""
    writer = ResponsesEventWriter(RID, {"model": "m"}, 1)
    sizes = [sum(map(len, writer.feed(chunk({"content": "token "})))) for _ in range(500)][2:]
    assert max(sizes) - min(sizes) <= 2, "only the sequence number's digits grow"
    assert orjson.loads(writer.finish()[-1].split(b"data: ", 1)[1])["response"]["output"][0]["content"][0][
        "text"] == "token " * 500
