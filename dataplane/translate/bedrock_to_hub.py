"""Inbound translation of AWS Bedrock's Converse answers to the hub: chat completions, their usage (cache
reads and writes as the hub's extensions) and streamed chunks (``ConverseChunkTranslator``). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.translate.anthropic_common import StreamError, count
from dataplane.translate.hub_to_bedrock import FINISH_REASONS

# --- Converse: the answer -----------------------------------------------------------------------------------------

def converse_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Converse counts cache reads and writes apart from ``inputTokens``; the hub's prompt_tokens holds all three.
    Writes at the 1-hour rate come from ``cacheDetails`` when Bedrock breaks them down; else all at the 5-minute
    rate (Tollway's extension of the hub's usage, as ``hub_to_anthropic.openai_usage``)."""
    cache_read = count(usage.get("cacheReadInputTokens"))
    writes = count(usage.get("cacheWriteInputTokens"))
    details = usage.get("cacheDetails")
    write_1h = sum(count(d.get("inputTokens")) for d in details if isinstance(d, dict) and d.get("ttl") == "1h") \
        if isinstance(details, list) else 0
    prompt = count(usage.get("inputTokens")) + cache_read + writes
    completion = count(usage.get("outputTokens"))
    prompt_details: dict[str, int] = {"cached_tokens": cache_read}
    if writes:
        prompt_details["cache_write_tokens"] = writes - min(write_1h, writes)
        prompt_details["cache_write_1h_tokens"] = min(write_1h, writes)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": prompt_details}


def finish_reason(stop_reason: Any, json_answered: bool = False) -> str:
    """The hub's finish reason for a Converse ``stopReason``; the forced JSON tool's call is an ordinary stop."""
    if json_answered and stop_reason == "tool_use":
        return "stop"
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def converse_completion(response: dict[str, Any], *, completion_id: str, model: str, created: int,
                        json_tool: str | None = None) -> dict[str, Any]:
    """A hub ``chat.completion`` for a Converse response."""
    output = response.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    answer_json: str | None = None
    for block in (message.get("content") if isinstance(message, dict) else None) or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, dict):
            arguments = orjson.dumps(use.get("input") if use.get("input") is not None else {}).decode()
            if json_tool is not None and use.get("name") == json_tool:
                answer_json = arguments
            else:
                calls.append({"id": use.get("toolUseId", ""), "type": "function",
                              "function": {"name": use.get("name", ""), "arguments": arguments}})
    content = answer_json if answer_json is not None else "".join(texts) if texts or not calls else None
    reply: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    usage = response.get("usage")
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": finish_reason(response.get("stopReason"), answer_json is not None)}],
        "usage": converse_usage(usage if isinstance(usage, dict) else {}),
    }


@dataclass(slots=True)
class ConverseChunkTranslator:
    """ConverseStream events in, hub ``chat.completion.chunk`` payloads out. One per stream; not shared.

    ``feed`` takes one decoded event as ``{event type: payload}`` (the shape botocore gives them):
    ``messageStart`` → the role chunk; ``contentBlockStart`` with ``toolUse`` → a tool-call delta with its id and
    name; ``contentBlockDelta`` ``text`` → content, ``toolUse.input`` → argument fragments; ``messageStop`` → the
    finish chunk; ``metadata`` → the final usage-only chunk (``choices: []``), after which ``finished`` is set.
    An exception event (``throttlingException``, ...) is a ``StreamError``. In JSON mode (``json_tool``) the forced
    tool's input fragments are the content, and text is held back until the stream shows whether the tool answers
    (then it is dropped, as in ``converse_completion``).
    """

    id: str
    created: int
    model: str
    json_tool: str | None = None
    finished: bool = False
    _tools: dict[int, int] = field(default_factory=dict)  # contentBlockIndex -> hub tool_call index
    _json_blocks: set[int] = field(default_factory=set)
    _held: list[str] = field(default_factory=list)
    _json_answered: bool = False

    def feed(self, event: dict[str, Any]) -> list[bytes] | StreamError:
        kind, body = next(iter(event.items()), ("", None))
        return self._event(kind, body if isinstance(body, dict) else {})

    def _event(self, kind: str, body: dict[str, Any]) -> list[bytes] | StreamError:
        index = body.get("contentBlockIndex", 0)
        if kind == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "contentBlockStart":
            use = (body.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            if self.json_tool is not None and use.get("name") == self.json_tool:
                self._json_blocks.add(index)
                self._json_answered = True
                self._held.clear()
                return []
            call = self._tools[index] = len(self._tools)
            return [self._chunk({"tool_calls": [{"index": call, "id": use.get("toolUseId", ""), "type": "function",
                                                 "function": {"name": use.get("name", ""), "arguments": ""}}]})]
        if kind == "contentBlockDelta":
            delta = body.get("delta") or {}
            text = delta.get("text")
            if isinstance(text, str) and text:
                if self.json_tool is None:
                    return [self._chunk({"content": text})]
                if not self._json_answered:
                    self._held.append(text)
                return []
            fragment = (delta.get("toolUse") or {}).get("input")
            if isinstance(fragment, str) and fragment:
                if index in self._json_blocks:
                    return [self._chunk({"content": fragment})]
                call = self._tools.get(index, 0)
                return [self._chunk({"tool_calls": [{"index": call, "function": {"arguments": fragment}}]})]
            return []  # reasoning and citation deltas have no hub counterpart
        if kind == "messageStop":
            out = [self._chunk({"content": "".join(self._held)})] if self._held else []
            self._held.clear()
            return [*out, self._chunk({}, finish_reason(body.get("stopReason"), self._json_answered))]
        if kind == "metadata":
            self.finished = True
            usage = body.get("usage")
            return [orjson.dumps({**self._base(), "choices": [],
                                  "usage": converse_usage(usage if isinstance(usage, dict) else {})})]
        if kind.endswith("Exception"):
            return StreamError(kind, str(body.get("message") or body.get("Message") or "stream error"))
        return []  # contentBlockStop, and event types added later

    def _base(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**self._base(), "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish}]})
