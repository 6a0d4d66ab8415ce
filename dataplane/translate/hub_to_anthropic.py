"""Outbound translation: the gateway calling Anthropic's Messages API for an OpenAI chat completions client.

``anthropic_request`` builds the Messages body, ``openai_completion`` converts the answer, ``ChunkTranslator``
converts the answer's SSE events into OpenAI ``chat.completion.chunk`` payloads one event at a time. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.translate.anthropic_common import (
    FINISH_REASONS,
    StreamError,
    Untranslatable,
    call_arguments,
    count,
    text_of,
)

# Anthropic requires max_tokens; used only when neither the client nor the deployment bounds the output.
FALLBACK_MAX_TOKENS = 4096


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
        # The client's bound, clamped to the deployment's (the budget reserved at most that), else the deployment's.
        "max_tokens": min(payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
                          or FALLBACK_MAX_TOKENS, default_max_tokens or FALLBACK_MAX_TOKENS),
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
    cache_read = count(usage.get("cache_read_input_tokens"))
    writes = count(usage.get("cache_creation_input_tokens"))
    # Writes by time-to-live, when Anthropic breaks them down; else all at the 5-minute rate.
    split = usage.get("cache_creation")
    write_1h = count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, dict) else 0
    prompt = count(usage.get("input_tokens")) + cache_read + writes
    completion = count(usage.get("output_tokens"))
    details: dict[str, int] = {"cached_tokens": cache_read}
    if writes:  # Tollway's extension of the hub's usage: billed at the cache-write rates
        details["cache_write_tokens"] = writes - min(write_1h, writes)
        details["cache_write_1h_tokens"] = min(write_1h, writes)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": details}


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
        arguments = call_arguments(fn)
        if arguments is None:
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

