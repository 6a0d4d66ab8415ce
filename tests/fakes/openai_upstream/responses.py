"""The Responses API: ``POST /v1/responses`` (a Response, or its event stream), ``previous_response_id`` over the
stored responses, ``GET``/``DELETE /v1/responses/{id}``; the checks of a Responses body (``_check_responses``)
and the function a request forces (``_forced_function``)."""

from __future__ import annotations

import hashlib
import time
from secrets import token_hex
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream.errors import _error, _invalid, _json
from tests.fakes.openai_upstream.prelude import StoredResponse, _Prelude
from tests.fakes.openai_upstream.tokens import response_input_tokens, text_tokens, word_pieces
from tests.fakes.sse import event_frame, send_frames


class _Responses(_Prelude):
    """``POST /v1/responses`` and ``GET``/``DELETE /v1/responses/{response_id}``."""

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        problem = _check_responses(body)
        if problem is not None:
            return problem
        previous = body.get("previous_response_id")
        context: list[dict[str, Any]] = []
        if previous is not None:
            kept = self.stored.get(previous)
            if kept is None:
                return _invalid(f"Previous response with id '{previous}' not found.", param="previous_response_id",
                                code="previous_response_not_found")
            context = [*kept.context, *kept.response["output"]]
        given = body.get("input")
        context += [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else [
            dict(item) for item in given or []]
        response = self._response(body, context)
        if body.get("store", True):
            self.stored[response["id"]] = StoredResponse(response, context)
        if not body.get("stream"):
            return _json(response)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        obfuscate = (body.get("stream_options") or {}).get("include_obfuscation", True)
        return await send_frames(request, resp, _response_events(response, obfuscate), self.die_after_chunks)

    def _response(self, body: dict[str, Any], context: list[dict[str, Any]]) -> dict[str, Any]:
        """The finished Response object answering ``body`` given its whole ``context``."""
        function = _forced_function(body)
        incomplete = None
        if function is not None:
            item: dict[str, Any] = {"id": f"fc_{token_hex(24)}", "type": "function_call", "status": "completed",
                                    "arguments": self.tool_arguments, "call_id": f"call_{token_hex(12)}",
                                    "name": function["name"]}
            output_tokens = text_tokens(function["name"] + self.tool_arguments)
        else:
            pieces, limit = word_pieces(self.reply), body.get("max_output_tokens")
            if limit is not None and len(pieces) > limit:
                pieces, incomplete = pieces[:limit], {"reason": "max_output_tokens"}
            item = {"id": f"msg_{token_hex(24)}", "type": "message",
                    "status": "incomplete" if incomplete else "completed",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(pieces)}],
                    "role": "assistant"}
            output_tokens = len(pieces)
        input_tokens = response_input_tokens(context, body.get("instructions"))
        created = int(time.time())
        tools = [{"description": None, "strict": True, **t} if t.get("type") == "function" else t
                 for t in body.get("tools") or []]
        return {
            "id": f"resp_{token_hex(24)}", "object": "response", "created_at": created,
            "status": "incomplete" if incomplete else "completed", "background": False,
            "completed_at": None if incomplete else created, "error": None, "incomplete_details": incomplete,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "model": body["model"], "output": [item],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
            "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"), "tools": tools, "top_logprobs": 0,
            "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
            "usage": {"input_tokens": input_tokens,
                      "input_tokens_details": {"cached_tokens": self.cached_tokens, "cache_write_tokens": 0},
                      "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input_tokens + output_tokens},
            "user": body.get("user"), "metadata": body.get("metadata") or {}}

    async def _stored_response(self, request: web.Request) -> web.StreamResponse:
        _, answer = await self._prelude(request)
        if answer is not None:
            return answer
        ident = request.match_info["response_id"]
        kept = self.stored.get(ident)
        if kept is None:
            return _error(404, f"Response with id '{ident}' not found.", "invalid_request_error", None)
        if request.method == "DELETE":
            del self.stored[ident]
            return _json({"id": ident, "object": "response.deleted", "deleted": True})
        return _json(kept.response)


def _check_responses(body: dict[str, Any]) -> web.Response | None:
    """The real API's 400 for a Responses body this fake can tell is wrong, else None."""
    if not body.get("model"):
        return _invalid("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    given = body.get("input")
    if given is not None and not isinstance(given, str | list):
        return _invalid(f"Invalid type for 'input': expected one of a string or array of input items, but got "
                        f"{type(given).__name__} instead.", param="input", code="invalid_type")
    if isinstance(given, list) and not all(isinstance(item, dict) for item in given):
        return _invalid("Invalid type for 'input': expected an array of input items.", param="input",
                        code="invalid_type")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < 16):
        return _invalid(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got "
                        f"{limit} instead.", param="max_output_tokens", code="integer_below_min_value")
    choice, names = body.get("tool_choice"), [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    if choice == "required" and not names:
        return _invalid("Tool choice 'required' must be specified with 'tools' parameter.", param="tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name") not in names:
        return _invalid("Tool choice 'function' not found in 'tools' parameter.", param="tool_choice")
    return None


def _forced_function(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function tool the request makes the model call: the first with ``"required"``, or the one it names."""
    functions: list[dict[str, Any]] = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if choice == "required" and functions:
        return functions[0]
    if isinstance(choice, dict) and choice.get("type") == "function":
        return next((t for t in functions if t.get("name") == choice.get("name")), None)
    return None


def _response_events(final: dict[str, Any], obfuscate: bool) -> list[bytes]:
    """The stream of frames that builds ``final`` up, in the real API's order, numbered by ``sequence_number``."""
    pending = {**final, "status": "in_progress", "completed_at": None, "incomplete_details": None, "output": [],
               "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": pending}),
                                                ("response.in_progress", {"response": pending})]

    def delta(ref: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
        pad = hashlib.sha256(text.encode()).hexdigest()[: max(1, 16 - len(text))]
        return {**ref, "delta": text, **extra, **({"obfuscation": pad} if obfuscate else {})}

    for index, item in enumerate(final["output"]):
        ref = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            arguments = item["arguments"]
            events.append(("response.output_item.added", {"output_index": index, "item": {
                **item, "status": "in_progress", "arguments": ""}}))
            half = len(arguments) // 2
            events += [("response.function_call_arguments.delta", delta(ref, part))
                       for part in (arguments[:half], arguments[half:]) if part]
            events.append(("response.function_call_arguments.done", {**ref, "arguments": arguments}))
        else:
            part = item["content"][0]
            events.append(("response.output_item.added", {"output_index": index, "item": {
                **item, "status": "in_progress", "content": []}}))
            ref["content_index"] = 0
            events.append(("response.content_part.added", {**ref, "part": {**part, "text": ""}}))
            events += [("response.output_text.delta", delta(ref, piece, logprobs=[]))
                       for piece in word_pieces(part["text"])]
            events.append(("response.output_text.done", {**ref, "text": part["text"], "logprobs": []}))
            events.append(("response.content_part.done", {**ref, "part": part}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    last = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    events.append((last, {"response": final}))
    return [event_frame(kind, {"type": kind, "sequence_number": i, **data}) for i, (kind, data) in enumerate(events)]
