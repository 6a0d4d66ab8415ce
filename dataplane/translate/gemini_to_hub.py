"""Inbound translation of Google's answers (the Gemini API and Vertex AI) to the hub: chat completions,
their usage (thinking tokens as reasoning, within completion tokens), and streamed chunks
(``GeminiChunkTranslator``). Pure; a prompt Google refused is a ``Blocked`` value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.translate.anthropic_common import StreamError, count
from dataplane.translate.hub_to_gemini import FINISH_REASONS, Blocked, call_id

# --- answers -----------------------------------------------------------------------------------------------------

def openai_usage(meta: Any) -> dict[str, Any]:
    """The hub usage of Google's ``usageMetadata`` (reasoning in the completion, cache reads in the prompt)."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    completion = count(meta.get("candidatesTokenCount")) + thoughts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": count(meta.get("cachedContentTokenCount"))},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def blocked(response: dict[str, Any]) -> Blocked | None:
    """Whether Google refused the prompt (a ``blockReason``, or feedback and no candidates at all)."""
    if response.get("candidates"):
        return None
    feedback = response.get("promptFeedback")
    if not isinstance(feedback, dict):
        return None
    reason = feedback.get("blockReason") or "OTHER"
    return Blocked(str(reason), str(feedback.get("blockReasonMessage") or ""))


def _candidate_index(candidate: dict[str, Any]) -> int:
    # proto3 JSON leaves zero values out: Vertex's first candidate has no "index".
    index = candidate.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else 0


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _tool_call(part: dict[str, Any], seed: str, candidate: int, index: int) -> dict[str, Any]:
    call = part["functionCall"] if isinstance(part.get("functionCall"), dict) else {}
    args = call.get("args")
    return {"id": call_id(seed, candidate, index, part.get("thoughtSignature")), "type": "function",
            "function": {"name": str(call.get("name", "")),
                         "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode()}}


def _finish(reason: Any, called: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def completion_id(response: dict[str, Any], seed: str) -> str:
    response_id = response.get("responseId")
    return f"chatcmpl-{response_id if isinstance(response_id, str) and response_id else seed}"


def openai_completion(response: dict[str, Any], created: int, model: str, call_seed: str) -> dict[str, Any] | Blocked:
    """An OpenAI ``chat.completion`` for a GenerateContentResponse, or ``Blocked`` when the prompt was refused.
    ``call_seed`` (a few hex digits the caller picks per answer) makes the tool call ids."""
    refused = blocked(response)
    if refused is not None:
        return refused
    choices = []
    for position, candidate in enumerate(c for c in response.get("candidates") or [] if isinstance(c, dict)):
        index = _candidate_index(candidate) or position
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in _parts(candidate):
            if "functionCall" in part:
                calls.append(_tool_call(part, call_seed, index, len(calls)))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                                   "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": index, "message": message, "logprobs": None,
                        "finish_reason": _finish(candidate.get("finishReason"), bool(calls))})
    if not choices:
        choices.append({"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None, "finish_reason": "stop"})
    return {"id": completion_id(response, call_seed), "object": "chat.completion", "created": created,
            "model": str(response.get("modelVersion") or model), "system_fingerprint": None,
            "choices": choices, "usage": openai_usage(response.get("usageMetadata"))}


def stream_error(chunk: dict[str, Any]) -> StreamError | None:
    """An ``{"error": {"code", "message", "status"}}`` object sent inside a stream, else None."""
    error = chunk.get("error")
    if not isinstance(error, dict):
        return None
    return StreamError(str(error.get("status") or error.get("code") or "UNKNOWN"), str(error.get("message", "")))


@dataclass(slots=True)
class GeminiChunkTranslator:
    """Streamed GenerateContentResponse chunks in, OpenAI chunk payloads out. One per stream; not shared between
    tasks. ``candidates`` is how many the request asked for: the stream is ``finished`` once each has its
    ``finishReason`` (the chunk that carries the last one also carries the call's final usage)."""

    created: int
    model: str
    call_seed: str
    candidates: int = 1
    finished: bool = False
    _id: str = ""
    _usage: dict[str, Any] | None = None
    _started: set[int] = field(default_factory=set)
    _calls: dict[int, int] = field(default_factory=dict)  # candidate index → tool calls so far
    _done: set[int] = field(default_factory=set)

    def feed(self, chunk: dict[str, Any]) -> list[bytes] | Blocked | StreamError:
        """The OpenAI chunks of one Google chunk (possibly none)."""
        error = stream_error(chunk)
        if error is not None:
            return error
        if not self._id:
            self._id = completion_id(chunk, self.call_seed)
            self.model = str(chunk.get("modelVersion") or self.model)
            refused = blocked(chunk)
            if refused is not None:
                return refused
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = chunk["usageMetadata"]  # cumulative: the latest replaces the earlier ones
        out: list[bytes] = []
        for candidate in chunk.get("candidates") or []:
            if isinstance(candidate, dict):
                out += self._candidate(candidate)
        if len(self._done) >= max(1, self.candidates):
            self.finished = True
            if self._usage is not None:
                out.append(orjson.dumps({**self._base(), "choices": [], "usage": openai_usage(self._usage)}))
        return out

    def _candidate(self, candidate: dict[str, Any]) -> list[bytes]:
        index = _candidate_index(candidate)
        out: list[bytes] = []
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        text = "".join(p["text"] for p in _parts(candidate)
                       if isinstance(p.get("text"), str) and not p.get("thought") and "functionCall" not in p)
        if text:
            out.append(self._chunk(index, {"content": text}))
        calls = []
        for part in _parts(candidate):
            if "functionCall" in part:
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                calls.append({"index": n, **_tool_call(part, self.call_seed, index, n)})
        if calls:
            out.append(self._chunk(index, {"tool_calls": calls}))
        reason = candidate.get("finishReason")
        if reason and index not in self._done:
            self._done.add(index)
            out.append(self._chunk(index, {}, _finish(reason, index in self._calls)))
        return out

    def _base(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**self._base(), "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish}]})
