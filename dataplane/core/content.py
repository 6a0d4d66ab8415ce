"""What is kept of prompt and response content, per the tenant's ``LoggingPolicy``; redaction before the provider.

Modes (``snapshot.proto`` ``LoggingPolicy.content``):

- ``none`` (the default, and what any unknown value means): nothing is kept.
- ``hashed``: a keyed HMAC-SHA256 of each message's content. The key is the data plane's secret, so equal
  prompts give equal digests (they can be correlated across requests and data planes sharing the key) while a
  digest cannot be reversed by hashing guesses without the key.
- ``redacted``: the text with PII and secrets replaced by ``[REDACTED:<KIND>]`` (``dataplane.core.pii``); non-text
  parts (images, audio) are replaced by a placeholder.
- ``full``: kept as sent and received.

Everything here is pure: inputs are never mutated (the client's payload is shared with the request path), and
``ContentKey`` hides its bytes from ``repr``/``str`` so the key cannot reach a log line by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from dataplane.core.pii import redact
from dataplane.snapshot.runtime import ContentPolicy

HASH_KEY_ENV = "TOLLWAY_CONTENT_HASH_KEY"
_OMITTED = "[OMITTED]"


class ContentKey:
    """The HMAC key of the ``hashed`` mode. Immutable; its bytes never appear in ``repr`` or ``str``."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("content hash key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ContentKey:
        """The key in ``TOLLWAY_CONTENT_HASH_KEY``, else a random one for this process.

        A random key still hides content but only correlates within one process: give every data plane of a
        fleet the same key to correlate across them.
        """
        value = environ.get(HASH_KEY_ENV, "")
        return cls(value.encode("utf-8")) if value else cls(secrets.token_bytes(32))

    def digest(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "ContentKey(<hidden>)"

    def __str__(self) -> str:  # (not ``__str__ = __repr__``: mypyc, ``dataplane.compiled``, cannot alias a method)
        return self.__repr__()




def _canonical(value: Any) -> bytes:
    """Bytes to hash: a string as UTF-8, anything else (content parts, tool calls) as sorted-key JSON."""
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _redact_part(part: Any, keep_non_text: bool) -> Any:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return {**part, "text": redact(part["text"])}
    if keep_non_text:
        return part
    kind = part.get("type") if isinstance(part, dict) else None
    return {"type": kind if isinstance(kind, str) else "unknown", "data": _OMITTED}


def _redact_content(content: Any, keep_non_text: bool) -> Any:
    if isinstance(content, str):
        return redact(content)
    if isinstance(content, list):
        return [_redact_part(p, keep_non_text) for p in content]
    return content if content is None or keep_non_text else _OMITTED


def _redact_json_text(text: str) -> str:
    """Tool-call arguments are JSON text: redact its string leaves so it stays valid JSON; else as plain text."""
    try:
        return orjson.dumps(_redact_leaves(orjson.loads(text))).decode("utf-8")
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested deeper than orjson writes
        return redact(text)


def _redact_leaves(value: Any) -> Any:
    """A copy of a parsed JSON value with every string leaf redacted. Iterative: no recursion limit to hit."""
    if isinstance(value, str):
        return redact(value)
    if not isinstance(value, dict | list):
        return value
    root: dict[Any, Any] | list[Any] = dict(value) if isinstance(value, dict) else list(value)
    stack = [root]
    while stack:
        node = stack.pop()
        slots: list[tuple[Any, Any]] = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for k, v in slots:
            if isinstance(v, str):
                node[k] = redact(v)
            elif isinstance(v, dict | list):
                child: dict[Any, Any] | list[Any] = dict(v) if isinstance(v, dict) else list(v)
                node[k] = child
                stack.append(child)
    return root


def _redact_tool_calls(tool_calls: Any) -> Any:
    if not isinstance(tool_calls, list):
        return tool_calls
    out = []
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            call = {**call, "function": {**fn, "arguments": _redact_json_text(fn["arguments"])}}
        out.append(call)
    return out


def redact_message(message: Any, *, keep_non_text: bool = False) -> Any:
    """A chat message with its text content and tool-call arguments redacted; other fields as they were.

    Non-text content parts (images, audio) are replaced by ``{"type", "data": "[OMITTED]"}`` unless
    ``keep_non_text``.
    """
    if not isinstance(message, dict):
        return message
    out = dict(message)
    if "content" in out:
        out["content"] = _redact_content(out["content"], keep_non_text)
    if "tool_calls" in out:
        out["tool_calls"] = _redact_tool_calls(out["tool_calls"])
    fc = out.get("function_call")
    if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
        out["function_call"] = {**fc, "arguments": _redact_json_text(fc["arguments"])}
    return out


def redact_request_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The chat request to send upstream when ``redact_before_provider``: every message's text redacted.

    String contents, ``text`` parts of content arrays and tool-call arguments are redacted; images and other
    parts are passed on (they are the request, not text we can scan). ``payload`` is not mutated.
    """
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return payload
    return {**payload, "messages": [redact_message(m, keep_non_text=True) for m in messages]}


def _hashed_message(key: ContentKey, message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"hmac": key.digest(_canonical(message))}
    out: dict[str, Any] = {}
    if isinstance(message.get("role"), str):
        out["role"] = message["role"]
    if message.get("content") is not None:
        out["hmac"] = key.digest(_canonical(message["content"]))
    if message.get("tool_calls") is not None:
        out["tool_calls_hmac"] = key.digest(_canonical(message["tool_calls"]))
    return out


def _kept_message(policy: ContentPolicy, key: ContentKey, message: Any) -> Any:
    if policy.mode == "hashed":
        return _hashed_message(key, message)
    if policy.mode == "redacted":
        return redact_message(message)
    return message


def kept_content(policy: ContentPolicy, key: ContentKey, messages: Any,
                 response: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The log's content fields for ``policy``: None for ``none``, else ``{"prompt": [...], "response": ...}``.

    ``messages`` is the request's ``messages`` array as the client sent it; ``response`` the assistant message
    the client received (``{"role", "content", "tool_calls"?}``), None when there was none.
    """
    if policy.mode == "none":
        return None
    prompt = [_kept_message(policy, key, m) for m in messages] if isinstance(messages, list) else []
    kept_response = _kept_message(policy, key, dict(response)) if response is not None else None
    return {"prompt": prompt, "response": kept_response}


def completion_message(completion: Any) -> dict[str, Any] | None:
    """The assistant message of a non-streamed chat completion (its first choice), for ``kept_content``."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    return message if isinstance(message, dict) else None


class MessageAccumulator:
    """Rebuilds the assistant message of a streamed completion from its chunks (first choice only).

    Owned by one request; feed it the parsed chunks only when the tenant's mode keeps content, so streams of
    tenants with ``none`` pay nothing.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}

    def feed(self, chunk: Any) -> None:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            return
        if isinstance(delta.get("content"), str):
            self._content.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict) or not isinstance(call.get("index"), int):
                continue
            acc = self._calls.setdefault(call["index"], {"id": "", "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
            if isinstance(call.get("id"), str):
                acc["id"] = call["id"]
            fn = call.get("function")
            if isinstance(fn, dict):
                for part in ("name", "arguments"):
                    if isinstance(fn.get(part), str):
                        acc["function"][part] += fn[part]

    def message(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "assistant", "content": "".join(self._content) if self._content else None}
        if self._calls:
            out["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
        return out
