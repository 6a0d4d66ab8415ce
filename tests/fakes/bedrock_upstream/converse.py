"""The Converse API: ``POST /model/{modelId}/converse`` answers a ``ConverseResponse``, ``POST
/model/{modelId}/converse-stream`` the same answer as event-stream frames (a text block one delta per word,
``word_pieces``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from secrets import token_urlsafe
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.bedrock_upstream.errors import ERROR_MESSAGES, _request_id, aws_error
from tests.fakes.bedrock_upstream.eventstream import eventstream_exception, eventstream_frame
from tests.fakes.bedrock_upstream.models import base_model_id
from tests.fakes.bedrock_upstream.prelude import _latency, _Prelude
from tests.fakes.bedrock_upstream.replies import _cut, _says_call, example_input
from tests.fakes.bedrock_upstream.tokens import converse_input_tokens, output_tokens
from tests.fakes.bedrock_upstream.validation import check_shape, converse_problem

_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def word_pieces(text: str) -> list[str]:
    """The reply as the fake streams it: one contentBlockDelta per word, spaces leading."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


class _Converse(_Prelude):
    """``FakeBedrock``'s Converse and ConverseStream endpoints."""

    async def _converse_body(self, request: web.Request, operation: str) -> tuple[dict[str, Any],
                                                                                  web.StreamResponse | None]:
        parsed, answer = await self._prelude(request, operation)
        if answer is not None:
            return {}, answer
        if parsed is None:
            return {}, aws_error("SerializationException", "Invalid JSON in request body", 400)
        problem = check_shape(operation, parsed)
        if problem is not None:
            return {}, aws_error(problem.error_type, problem.message, 400)
        if base_model_id(request.match_info["modelId"]).partition(".")[2].startswith(("titan-embed", "embed")):
            return {}, aws_error("ValidationException", "This action doesn't support the model that you provided. "
                                                        "Try again with a supported text or chat model.")
        semantic = converse_problem(parsed)
        if semantic is not None:
            return {}, aws_error("ValidationException", semantic)
        body: dict[str, Any] = parsed
        return body, None

    def _converse_answer(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The content blocks and stop reason the fake model answers a Converse body with."""
        config = body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in config.get("tools") or [] if "toolSpec" in t]
        choice = config.get("toolChoice") or {"auto": {}}
        last = body["messages"][-1]
        text = " ".join(block["text"] for block in last["content"] if "text" in block)
        answering = last["role"] == "user" and any("toolResult" in block for block in last["content"])
        if tools and ("any" in choice or "tool" in choice or (not answering and _says_call(text))):
            forced = (choice.get("tool") or {}).get("name")
            spec = next((t for t in tools if t["name"] == forced), None) or next(
                (t for t in tools if t["name"].lower() in text.lower()), tools[0])
            call = {"toolUseId": f"tooluse_{token_urlsafe(16)}", "name": spec["name"],
                    "input": self.tool_input if self.tool_input is not None else example_input(
                        spec["inputSchema"].get("json"))}
            blocks = ([{"text": self.tool_preamble}] if self.tool_preamble else []) + [{"toolUse": call}]
            return blocks, self.stop_reason or "tool_use"
        inference = body.get("inferenceConfig") or {}
        reply, reason, _ = _cut(self.reply, inference.get("maxTokens"), inference.get("stopSequences") or [])
        return [{"text": reply}], self.stop_reason or reason or "end_turn"

    def _usage(self, input_tokens: int, output: int) -> dict[str, int]:
        return {"inputTokens": input_tokens, "outputTokens": output,
                "totalTokens": input_tokens + output + self.cache_read + self.cache_write,
                "cacheReadInputTokens": self.cache_read, "cacheWriteInputTokens": self.cache_write}

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._converse_body(request, "Converse")
        if answer is not None:
            return answer
        blocks, stop_reason = self._converse_answer(body)
        return web.Response(body=orjson.dumps({
            "output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop_reason,
            "usage": self._usage(converse_input_tokens(body), output_tokens(blocks)),
            "metrics": {"latencyMs": _latency(request)}}), content_type="application/json", headers=_request_id())

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._converse_body(request, "ConverseStream")
        if answer is not None:
            return answer
        blocks, stop_reason = self._converse_answer(body)
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        for index, block in enumerate(blocks):
            if "toolUse" in block:
                call = block["toolUse"]
                events.append(("contentBlockStart", {"start": {"toolUse": {"toolUseId": call["toolUseId"],
                                                                           "name": call["name"]}},
                                                     "contentBlockIndex": index}))
                raw = orjson.dumps(call["input"]).decode()
                events += [("contentBlockDelta", {"delta": {"toolUse": {"input": raw[i:i + 10]}},
                                                  "contentBlockIndex": index}) for i in range(0, len(raw), 10)]
            else:
                events += [("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": index})
                           for piece in word_pieces(block["text"])]
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
        events.append(("messageStop", {"stopReason": stop_reason}))
        usage = self._usage(converse_input_tokens(body), output_tokens(blocks))
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream", **_request_id()})
        await resp.prepare(request)
        for i, (kind, payload) in enumerate([*events, ("metadata", {"usage": usage, "metrics": {}})]):
            if self.event_delay_s:
                await asyncio.sleep(self.event_delay_s)
            if i == self.die_after_events:
                assert request.transport is not None
                request.transport.close()
                return resp
            if i == self.error_after_events:
                message = ERROR_MESSAGES.get(self.stream_error[:1].upper() + self.stream_error[1:], self.stream_error)
                extra = {"originalStatusCode": 500, "originalMessage": message} \
                    if self.stream_error == "modelStreamErrorException" else {}
                await resp.write(eventstream_exception(self.stream_error, {"message": message, **extra}))
                break
            if kind == "metadata":
                payload = {**payload, "metrics": {"latencyMs": _latency(request)}}
            padded = {**payload, "p": _PADDING[: 1 + (i * 7) % len(_PADDING)]} if self.padding else payload
            await resp.write(eventstream_frame(kind, padded))
        await resp.write_eof()
        return resp
