"""Pure translations between OpenAI chat completions and Anthropic Messages, both directions.

Outbound (the gateway calling Anthropic for an OpenAI client): ``anthropic_request`` builds the Messages body,
``openai_completion`` converts the answer, ``ChunkTranslator`` converts the answer's SSE events into OpenAI
``chat.completion.chunk`` payloads one event at a time.

Inbound (an Anthropic client calling the gateway's ``POST /v1/messages``): ``openai_request`` builds the chat
completion body the request path validates and routes, ``anthropic_message`` converts the completion back, and
``EventWriter`` turns OpenAI chunk payloads into Anthropic SSE events.

No I/O, no clock, no asyncio. What cannot be translated is a value (``Untranslatable``) the caller turns into a
400; a stream's ``error`` event is a value too (``StreamError``). The only exception that can escape is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Anthropic requires max_tokens; used only when neither the client nor the deployment bounds the output.
FALLBACK_MAX_TOKENS = 4096

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                  "pause_turn": "stop", "refusal": "content_filter"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}

@dataclass(frozen=True, slots=True)
class Untranslatable:
    """A request the other schema cannot express; ``param`` names the offending field (OpenAI-style path)."""

    message: str
    param: str | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    """An ``error`` event in an Anthropic stream (e.g. ``overloaded_error``)."""

    type: str
    message: str


def anthropic_request(payload: dict[str, Any], upstream_model: str, default_max_tokens: int,
                      stream: bool) -> dict[str, Any] | Untranslatable:
    """The Messages API body for an (already validated) OpenAI chat completion body."""
    if (payload.get("n") or 1) != 1:
        return Untranslatable("this model's provider returns one choice per request: 'n' must be 1", "n")
    if payload.get("functions") is not None or payload.get("function_call") is not None:
        return Untranslatable("legacy 'functions' are not supported by this model's provider: use 'tools'",
                              "functions")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(payload["messages"]):
        role = m["role"]
        if role in ("system", "developer"):
            text = text_of(m.get("content"))
            if text:
                system.append(text)
            continue
        blocks = anthropic_content(m, f"messages[{i}]")
        if isinstance(blocks, str):
            return Untranslatable(blocks, f"messages[{i}]")
        # tool results travel in user turns; consecutive turns of one role become one (Anthropic alternates).
        turn_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
        or FALLBACK_MAX_TOKENS,
        "messages": turns,
    }
    if system:
        body["system"] = "\n\n".join(system)
    temperature = payload.get("temperature")
    if temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1: clamp rather than fail a request another candidate accepts.
        body["temperature"] = min(float(temperature), 1.0)
    if payload.get("top_p") is not None:
        body["top_p"] = payload["top_p"]
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = payload.get("tools")
    if tools:
        converted = []
        for j, t in enumerate(tools):
            fn = t.get("function")
            if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                return Untranslatable("only function tools with a name are supported by this model's provider",
                                      f"tools[{j}]")
            tool: dict[str, Any] = {"name": fn["name"],
                                    "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
            if fn.get("description"):
                tool["description"] = fn["description"]
            converted.append(tool)
        body["tools"] = converted
        choice = anthropic_tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
        if isinstance(choice, str):
            return Untranslatable(choice, "tool_choice")
        if choice is not None:
            body["tool_choice"] = choice
    if isinstance(payload.get("user"), str) and payload["user"]:
        body["metadata"] = {"user_id": payload["user"]}
    if stream:
        body["stream"] = True
    return body


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; OpenAI's prompt_tokens holds all."""
    cache_read = _count(usage.get("cache_read_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + cache_read + _count(usage.get("cache_creation_input_tokens"))
    completion = _count(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cache_read}}


def openai_completion(message: dict[str, Any], created: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` for an Anthropic Messages response."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id", ""), "type": "function",
                          "function": {"name": block.get("name", ""),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                             "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": message.get("id", ""), "object": "chat.completion", "created": created,
        "model": message.get("model", ""), "system_fingerprint": None,
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(message.get("stop_reason") or "end_turn", "stop")}],
        "usage": openai_usage(message.get("usage") or {}),
    }


@dataclass(slots=True)
class ChunkTranslator:
    """Anthropic stream events in, OpenAI chunk payloads out. One per stream; not shared between tasks."""

    created: int
    model: str
    finished: bool = False
    _id: str = ""
    _usage: dict[str, Any] = field(default_factory=dict)
    _tools: dict[int, int] = field(default_factory=dict)  # Anthropic block index -> OpenAI tool_call index

    def feed(self, event: dict[str, Any]) -> list[bytes] | StreamError:
        """The chunks for one event's ``data`` object (possibly none)."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = message.get("id", "")
            self.model = message.get("model") or self.model
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[event.get("index", 0)] = len(self._tools)
                return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id", ""), "type": "function",
                                                     "function": {"name": block.get("name", ""),
                                                                  "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                return [self._chunk({"content": delta["text"]})]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                index = self._tools.get(event.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": delta["partial_json"]}}]})]
            return []  # thinking and signature deltas have no OpenAI counterpart
        if kind == "message_delta":
            # message_delta usage counts are cumulative: they replace, never add.
            self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASONS.get(reason or "end_turn", "stop"))]
        if kind == "message_stop":
            self.finished = True
            return [orjson.dumps({**self._base(), "choices": [], "usage": openai_usage(self._usage)})]
        if kind == "error":
            error = event.get("error") or {}
            return StreamError(str(error.get("type", "api_error")), str(error.get("message", "stream error")))
        return []  # ping, content_block_stop, and event types added later

    def _base(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish}]})


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
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(u.get("prompt_tokens"))
    return {"input_tokens": max(prompt - cached, 0), "output_tokens": _count(u.get("completion_tokens")),
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
                        "input": _json_object(fn.get("arguments"))})
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
            "usage": {"input_tokens": 0, "output_tokens": 0}}})]

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


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _json_object(arguments: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def text_of(content: Any) -> str:
    """The text of a string or of a list of text parts/blocks (other parts skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _image_block(part: dict[str, Any]) -> dict[str, Any] | str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        return "image_url.url must be a string"
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            return "image data URLs must look like 'data:<media type>;base64,<data>'"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return "image_url.url must be an http(s) URL or a base64 data URL"


def anthropic_content(m: dict[str, Any], where: str) -> list[dict[str, Any]] | str:
    """The Anthropic content blocks of one OpenAI user/assistant/tool message, or why there are none."""
    role, content = m["role"], m.get("content")
    if role in ("tool", "function"):
        if not isinstance(m.get("tool_call_id"), str):
            return f"'{where}.tool_call_id' is required for tool messages"
        return [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": text_of(content)}]
    blocks: list[dict[str, Any]] = []
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    for j, part in enumerate(parts):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:  # Anthropic refuses empty text blocks
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url" and role == "user":
            image = _image_block(part)
            if isinstance(image, str):
                return f"'{where}.content[{j}]': {image}"
            blocks.append(image)
        else:
            return f"'{where}.content[{j}]': parts of type {kind!r} are not supported by this model's provider"
    for j, call in enumerate((m.get("tool_calls") or []) if role == "assistant" else []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return f"'{where}.tool_calls[{j}]' must be a function call with a name"
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            return f"'{where}.tool_calls[{j}].function.arguments' must be a JSON object"
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn["name"], "input": arguments})
    return blocks


def anthropic_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | str | None:
    result: dict[str, Any] | None
    if choice is None or choice == "auto":
        result = {"type": "auto"} if parallel is False else None
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        return "'tool_choice' must be 'auto', 'required', 'none' or a function"
    if result is not None and parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


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
    source = block.get("source") or {}
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
