"""Inbound translation: an Anthropic Messages client calling the gateway's ``POST /v1/messages``.

``openai_request`` builds the chat completion body the request path validates and routes like any other,
``anthropic_message`` converts the completion back, ``EventWriter`` turns OpenAI chunk payloads into Anthropic
SSE events, ``anthropic_error`` is Anthropic's error envelope. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from dataplane.translate.anthropic_common import STOP_REASONS, Untranslatable, count, json_object, text_of


def openai_request(body: Any) -> dict[str, Any] | Untranslatable:
    """The OpenAI chat completion body for an Anthropic Messages request (validated later as any other)."""
    if not isinstance(body, dict):
        return Untranslatable("the request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return Untranslatable("model: Field required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return Untranslatable("max_tokens: Field required (a positive integer)", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return Untranslatable("messages: Field required (a non-empty list)", "messages")
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else text_of(system)
        out.append({"role": "system", "content": text})
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return Untranslatable(f"messages.{i}.role: must be 'user' or 'assistant'", f"messages.{i}.role")
        converted = openai_blocks(m, f"messages.{i}")
        if isinstance(converted, str):
            return Untranslatable(converted, f"messages.{i}.content")
        out.extend(converted)
    payload: dict[str, Any] = {"model": body["model"], "max_tokens": max_tokens, "messages": out}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            payload[name] = body[name]
    if body.get("stop_sequences"):
        payload["stop"] = body["stop_sequences"]
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                  for t in tools):
            return Untranslatable("tools: each tool must be an object with a name", "tools")
        fns = [t for t in tools if t.get("type") in (None, "custom")]
        if len(fns) != len(tools):
            return Untranslatable("tools: only custom (client) tools are supported", "tools")
        payload["tools"] = [{"type": "function", "function": {
            "name": t["name"], "description": t.get("description", ""),
            "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}} for t in fns]
    choice = body.get("tool_choice")
    if choice is not None:
        converted_choice = openai_tool_choice(choice)
        if isinstance(converted_choice, Untranslatable):
            return converted_choice
        payload.update(converted_choice)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        payload["user"] = metadata["user_id"]
    if body.get("stream"):
        # The usage chunk is what lets the inbound stream report usage in message_delta.
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def anthropic_usage(usage: Any) -> dict[str, int]:
    u = usage if isinstance(usage, dict) else {}
    details = u.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = count(u.get("prompt_tokens"))
    return {"input_tokens": max(prompt - cached, 0), "output_tokens": count(u.get("completion_tokens")),
            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def anthropic_message(completion: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages response for an OpenAI chat completion (first choice)."""
    choices = completion.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                        "input": json_object(fn.get("arguments"))})
    return {"id": completion.get("id", ""), "type": "message", "role": "assistant",
            "model": completion.get("model", ""), "content": content,
            "stop_reason": STOP_REASONS.get(choices[0].get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None, "usage": anthropic_usage(completion.get("usage"))}


def sse_event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
            529: "overloaded_error"}.get(status, "api_error")


def anthropic_error(status: int, message: str) -> bytes:
    """Anthropic's error envelope, for an inbound ``/v1/messages`` refusal or a mid-stream ``error`` event's data."""
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": message}})


@dataclass(slots=True)
class EventWriter:
    """OpenAI chunk payloads in, Anthropic SSE events out. One per stream; call ``finish`` once at the end."""

    model: str
    _started: bool = False
    _next: int = 0  # next Anthropic content block index
    _open: tuple[str, int] | None = None  # ("text", 0) or ("tool", openai tool index)
    _finish: str = "stop"
    _usage: Any = None
    _id: str = ""

    def feed(self, payload: bytes) -> list[bytes]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        out = self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                if self._open != ("text", 0):
                    out += self._open_block(("text", 0), {"type": "text", "text": ""})
                out.append(sse_event("content_block_delta", {"index": self._next - 1, "delta": {
                    "type": "text_delta", "text": delta["content"]}}))
            for call in delta.get("tool_calls") or []:
                index = call.get("index", 0)
                fn = call.get("function") or {}
                if self._open != ("tool", index):
                    out += self._open_block(("tool", index), {"type": "tool_use", "id": call.get("id", ""),
                                                              "name": fn.get("name", ""), "input": {}})
                if fn.get("arguments"):
                    out.append(sse_event("content_block_delta", {"index": self._next - 1, "delta": {
                        "type": "input_json_delta", "partial_json": fn["arguments"]}}))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def finish(self) -> list[bytes]:
        """The closing events: the open block's stop, ``message_delta`` (stop reason, usage), ``message_stop``."""
        out = self._start({})
        out += self._close()
        usage = anthropic_usage(self._usage)
        out.append(sse_event("message_delta", {
            "delta": {"stop_reason": STOP_REASONS.get(self._finish, "end_turn"), "stop_sequence": None},
            "usage": usage}))
        out.append(sse_event("message_stop", {}))
        return out

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        self._id = str(chunk.get("id") or "msg_tollway")
        return [sse_event("message_start", {"message": {
            "id": self._id, "type": "message", "role": "assistant", "model": chunk.get("model") or self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            sse_event("ping", {})]  # as Anthropic does, right after message_start

    def _open_block(self, which: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self._open = which
        out.append(sse_event("content_block_start", {"index": self._next, "content_block": block}))
        self._next += 1
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [sse_event("content_block_stop", {"index": self._next - 1})]



def openai_tool_choice(choice: Any) -> dict[str, Any] | Untranslatable:
    """The OpenAI fields (``tool_choice``, maybe ``parallel_tool_calls``) for an Anthropic ``tool_choice``."""
    if not isinstance(choice, dict):
        return Untranslatable("tool_choice: must be an object", "tool_choice")
    kind = choice.get("type")
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        return Untranslatable("tool_choice: type must be auto, any, tool (with a name) or none", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _image_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source")
    if not isinstance(source, dict):  # a client's malformed block: refused by the caller as an invalid image
        return None
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def openai_blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]] | str:
    """The OpenAI messages for one Anthropic message: tool results become ``tool`` messages, placed first."""
    content = m.get("content")
    if isinstance(content, str):
        return [{"role": m["role"], "content": content}]
    if not isinstance(content, list):
        return f"{where}.content: must be a string or a list of content blocks"
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image" and m["role"] == "user":
            image = _image_part(block)
            if image is None:
                return f"{where}.content.{j}.source: must be a base64 or url image source"
            parts.append(image)
        elif kind == "tool_use" and m["role"] == "assistant":
            calls.append({"id": block.get("id", ""), "type": "function", "function": {
                "name": block.get("name", ""), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind == "tool_result" and m["role"] == "user":
            inner = block.get("content")
            tools.append({"role": "tool", "tool_call_id": block.get("tool_use_id", ""),
                          "content": inner if isinstance(inner, str) else text_of(inner)})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's own reasoning: nothing an OpenAI upstream can take back
        else:
            return f"{where}.content.{j}: blocks of type {kind!r} are not supported here"
    out = tools
    if m["role"] == "assistant":
        message: dict[str, Any] = {"role": "assistant", "content": text_of(parts) or None}
        if calls:
            message["tool_calls"] = calls
        if message["content"] is not None or calls:
            out.append(message)
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": text_of(parts) if only_text else parts})
    return out
