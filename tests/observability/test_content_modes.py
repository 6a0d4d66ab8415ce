"""Content modes of the request log and redaction before the provider: pure functions, no event loop."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from dataplane.core.content import ContentKey, kept_content, redact_request_payload
from dataplane.snapshot.runtime import ContentPolicy

pytestmark = pytest.mark.pure

KEY = ContentKey(b"k" * 32)
SECRET_KEY_BYTES = b"hmac-secret-0123456789abcdef"
PROMPT = "My card is 4111 1111 1111 1111 and my mail is jane@example.com"
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]
RESPONSE = {"role": "assistant", "content": "Noted, jane@example.com."}


def test_none_keeps_nothing() -> None:
    assert kept_content(ContentPolicy("none"), KEY, MESSAGES, RESPONSE) is None


@pytest.mark.parametrize("content", ["", "verbose", "FULL"])
def test_unknown_mode_fails_closed(content: str) -> None:
    policy = ContentPolicy.from_fields(content, False)
    assert policy.mode == "none"
    assert kept_content(policy, KEY, MESSAGES, RESPONSE) is None


def test_full_keeps_as_is() -> None:
    kept = kept_content(ContentPolicy("full"), KEY, MESSAGES, RESPONSE)
    assert kept == {"prompt": MESSAGES, "response": RESPONSE}


def test_redacted_replaces_pii_and_omits_images() -> None:
    messages = [*MESSAGES, {"role": "user", "content": [
        {"type": "text", "text": "call +44 20 7946 0958"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]
    kept = kept_content(ContentPolicy("redacted"), KEY, messages, RESPONSE)
    assert kept == {
        "prompt": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "My card is [REDACTED:CARD] and my mail is [REDACTED:EMAIL]"},
            {"role": "user", "content": [{"type": "text", "text": "call [REDACTED:PHONE]"},
                                         {"type": "image_url", "data": "[OMITTED]"}]},
        ],
        "response": {"role": "assistant", "content": "Noted, [REDACTED:EMAIL]."},
    }


def test_hashed_equal_prompts_give_equal_digests_and_differ_otherwise() -> None:
    policy = ContentPolicy("hashed")
    a = kept_content(policy, KEY, MESSAGES, RESPONSE)
    b = kept_content(policy, KEY, copy.deepcopy(MESSAGES), dict(RESPONSE))
    other = kept_content(policy, KEY, [MESSAGES[0], {"role": "user", "content": PROMPT + "!"}], None)
    assert a is not None and b is not None and other is not None
    assert a == b
    assert [m["role"] for m in a["prompt"]] == ["system", "user"]
    assert all(len(m["hmac"]) == 64 for m in a["prompt"])
    assert a["prompt"][0] == other["prompt"][0]  # the same system prompt correlates
    assert a["prompt"][1] != other["prompt"][1]
    assert other["response"] is None
    # A different key gives different digests: they depend on the key, not just the text.
    c = kept_content(policy, ContentKey(b"x" * 32), MESSAGES, RESPONSE)
    assert c is not None and c["prompt"][1] != a["prompt"][1]


def test_hashed_output_contains_neither_content_nor_key() -> None:
    key = ContentKey(SECRET_KEY_BYTES)
    kept = kept_content(ContentPolicy("hashed"), key, MESSAGES, RESPONSE)
    out = orjson.dumps(kept)
    assert b"jane@example.com" not in out and b"4111" not in out and b"terse" not in out
    assert SECRET_KEY_BYTES not in out and SECRET_KEY_BYTES.hex().encode() not in out
    assert SECRET_KEY_BYTES.decode() not in repr(key) and SECRET_KEY_BYTES.decode() not in f"{key}"


def test_hash_key_from_environment() -> None:
    fixed = ContentKey.from_environ({"TOLLWAY_CONTENT_HASH_KEY": SECRET_KEY_BYTES.decode()})
    again = ContentKey.from_environ({"TOLLWAY_CONTENT_HASH_KEY": SECRET_KEY_BYTES.decode()})
    assert fixed.digest(b"p") == again.digest(b"p")  # data planes sharing the key correlate
    random_a, random_b = ContentKey.from_environ({}), ContentKey.from_environ({})
    assert random_a.digest(b"p") != random_b.digest(b"p")
    with pytest.raises(ValueError):
        ContentKey(b"short")


def test_redact_request_payload_covers_all_text_and_does_not_mutate() -> None:
    payload: dict[str, Any] = {
        "model": "chat",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "Support bot for jane@example.com"},
            {"role": "user", "content": [
                {"type": "text", "text": "my IBAN is GB82 WEST 1234 5698 7654 32"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": '{"email": "jane@example.com", "n": 3, '
                                                            '"nested": ["ssn 123-45-6789"]}'},
            }]},
            {"role": "tool", "tool_call_id": "call_1", "content": "found 192.168.0.7"},
        ],
    }
    before = copy.deepcopy(payload)
    out = redact_request_payload(payload)
    assert payload == before
    assert out["model"] == "chat" and out["temperature"] == 0.2
    msgs = out["messages"]
    assert msgs[0]["content"] == "Support bot for [REDACTED:EMAIL]"
    assert msgs[1]["content"] == [
        {"type": "text", "text": "my IBAN is [REDACTED:IBAN]"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},  # passed on to the provider
    ]
    args = msgs[2]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(args) == {"email": "[REDACTED:EMAIL]", "n": 3, "nested": ["ssn [REDACTED:SSN]"]}
    assert msgs[2]["content"] is None and msgs[2]["tool_calls"][0]["id"] == "call_1"
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": "found [REDACTED:IPV4]"}


@pytest.mark.parametrize("depth", [10, 500, 2000])
def test_redact_request_payload_odd_arguments(depth: int) -> None:
    # Deeper than orjson writes (255) or reads (1024): still redacted, as text, and nothing raises.
    deep = "[" * depth + '"mail jane@example.com"' + "]" * depth
    payload = {"messages": [{"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": "not json: jane@example.com"}},
        {"function": {"name": "g", "arguments": deep}},
    ]}]}
    calls = redact_request_payload(payload)["messages"][0]["tool_calls"]
    assert calls[0]["function"]["arguments"] == "not json: [REDACTED:EMAIL]"
    assert calls[1]["function"]["arguments"] == deep.replace("jane@example.com", "[REDACTED:EMAIL]")


def test_completion_message_and_stream_accumulator() -> None:
    from dataplane.core.content import MessageAccumulator, completion_message

    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi jane@example.com"}}]}
    assert completion_message(body) == {"role": "assistant", "content": "hi jane@example.com"}
    assert completion_message({"choices": []}) is None and completion_message("x") is None
    acc = MessageAccumulator()
    for chunk in [
        {"choices": [{"delta": {"role": "assistant", "content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [{"delta": {"tool_calls": [
            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [], "usage": {"prompt_tokens": 3}},
    ]:
        acc.feed(chunk)
    assert acc.message() == {"role": "assistant", "content": "Hello", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}
    assert MessageAccumulator().message() == {"role": "assistant", "content": None}
