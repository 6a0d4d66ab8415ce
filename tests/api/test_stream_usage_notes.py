"""``note_usage``: what a relayed stream is charged from when the upstream never reports usage (the text its
chunks carried), and the usage it reports when it does."""

from __future__ import annotations

import orjson
import pytest

from dataplane.api.openai import OpenAIStream
from dataplane.api.streaming import SEPARATOR, StreamResult, note_usage

pytestmark = pytest.mark.pure


def _chunk(delta: dict[str, object]) -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def test_the_text_of_content_and_tool_arguments_is_counted_escapes_included() -> None:
    texts = ['He said "hi"', "back\\slash and \n newline", "", "é unicode"]
    payloads = [_chunk({"content": t}) for t in texts]
    payloads.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}))
    result = StreamResult()
    assert note_usage(payloads, SEPARATOR.join(payloads), result) == []
    # Counted as sent on the wire: the JSON-escaped text between the quotes.
    expected = sum(len(orjson.dumps(t)) - 2 for t in texts) + len(orjson.dumps('{"city": "Paris"}')) - 2
    assert result.content_chars == expected
    assert result.chunks == 5 and result.usage is None


def test_a_usage_chunk_is_read_and_dropped_when_the_client_did_not_ask_for_usage() -> None:
    usage = orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [],
                          "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
    payloads = [_chunk({"content": "ok"}), usage]
    result = StreamResult()
    assert note_usage(payloads, SEPARATOR.join(payloads), result, include_usage=False) == [1]
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 3)


def test_the_text_is_not_counted_once_the_usage_came() -> None:
    usage = orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [],
                          "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
    result = StreamResult()
    first = [_chunk({"content": "abc"})]
    note_usage(first, SEPARATOR.join(first), result)
    assert result.content_chars == 3 and result.usage is None
    rest = [_chunk({"content": "defg"}), usage]
    note_usage(rest, SEPARATOR.join(rest), result)
    # What is charged is the reported usage; the estimate's count stops where it is no longer needed.
    assert result.usage is not None and result.usage.completion_tokens == 3
    assert result.content_chars == 3 and result.chunks == 3


def _usage_only(prompt: int, completion: int) -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [],
                         "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                   "total_tokens": prompt + completion}})


def _events(sse: bytes) -> list[bytes]:
    assert sse.startswith(b"data: ") and sse.endswith(b"\n\n")
    return sse[len(b"data: "):-2].split(SEPARATOR)


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_client_gets_the_usage_chunk_only_when_it_asked(include_usage: bool) -> None:
    # As OpenAI streams with include_usage: "usage": null on every chunk, the usage-only chunk last.
    chunks = [orjson.dumps({**orjson.loads(_chunk({"content": w})), "usage": None}) for w in ("Hel", "lo")]
    usage = _usage_only(5, 2)
    result = StreamResult()
    sent = OpenAIStream(include_usage).frame([*chunks, usage], result)
    assert _events(sent) == ([*chunks, usage] if include_usage else chunks)
    assert result.usage is not None and (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 2)


def test_a_usage_only_chunk_elsewhere_in_a_batch_is_dropped_too() -> None:
    a, b = _chunk({"content": "a"}), _chunk({"content": "b"})
    result = StreamResult()
    assert _events(OpenAIStream(False).frame([a, _usage_only(1, 1), b, _usage_only(4, 3)], result)) == [a, b]
    assert result.usage is not None and result.usage.completion_tokens == 3  # the last one reported
    assert OpenAIStream(False).frame([_usage_only(4, 3)], StreamResult()) == b""
