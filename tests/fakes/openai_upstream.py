"""A fake OpenAI server: a real aiohttp application on loopback speaking OpenAI's wire formats.

``async with fake_openai(token="sk-fake") as fake:`` starts it on a free port; ``fake.base_url`` ends in ``/v1``.
It serves:

- ``POST /v1/chat/completions``: a chat completion, or with ``stream`` ``data: <chunk>`` lines, a usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``.
- ``POST /v1/embeddings``: ``input`` a string, strings, token ids or lists of token ids (400 ``'$.input' is
  invalid`` otherwise); ``embedding_vector`` of each (``dimensions`` components, at most ``MAX_DIMENSIONS``,
  else ``embedding_dimensions``), as floats or, with ``encoding_format: "base64"``, little-endian float32 bytes
  in base64; usage counts ``text_tokens`` per string and one token per id.
- ``POST /v1/completions`` (legacy): ``prompt`` a string or strings (or token ids), ``max_tokens`` (16 by default,
  ``finish_reason: "length"`` when the reply is longer), ``n`` (at most ``MAX_N``), ``echo``, ``stream``
  (``data: <text_completion chunk>`` lines, a usage chunk when ``stream_options.include_usage``, ``data:
  [DONE]``).
- ``POST /v1/responses``: a Response object whose ``output`` is one ``message`` (``output_text``) or, when function
  ``tools`` are offered and ``tool_choice`` is ``"required"`` (or names one of them), one ``function_call`` with
  ``tool_arguments``; ``max_output_tokens`` below the reply's length makes it ``incomplete``. With ``stream`` it is
  the event stream (``event: <type>`` / ``data: <json>``, a ``sequence_number`` on each): response.created,
  response.in_progress, response.output_item.added, response.content_part.added, response.output_text.delta per
  word, response.output_text.done, response.content_part.done, response.output_item.done, response.completed
  (function calls: response.function_call_arguments.delta/.done in place of the content events). With ``store``
  (the default) the response is kept in ``stored``: ``previous_response_id`` prepends its input and output to the
  new input (an unknown id is the real 400 ``previous_response_not_found``), and ``GET``/``DELETE
  /v1/responses/{id}`` retrieve and delete it. Usage: ``response_input_tokens`` of the whole context.
- ``POST /v1/moderations``: a ModerationCreateResponse, one result per input string (one for a multimodal list);
  an input containing a word of ``moderation_triggers`` is flagged in that word's category.

Every endpoint first records the request (``fake.requests``, with its path), checks the bearer token (401 with
OpenAI's error body otherwise), refuses a body that is not a JSON object (400), then applies the knobs a test
sets before sending: ``delay_s`` (wait before answering), ``drop_connection`` (close the socket without
answering), ``fail_status``/``fail_times`` (answer an error status that many times). Other knobs:
``die_after_chunks`` (close the socket in the middle of a chat, completions or Responses stream, before that
frame), ``reply`` (the content), ``cached_tokens`` (reported as cached input), ``embedding_dimensions``,
``tool_arguments``, ``moderation_triggers``. Errors use OpenAI's envelope ``{"error": {"message", "type",
"param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from secrets import token_hex
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.sse import data_frame, event_frame, send_frames

INVALID = "'$.{}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
UNPARSABLE = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
              "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If "
              "you have trouble figuring out how to fix this, please contact us through our help center at "
              "help.openai.com.)")
MAX_DIMENSIONS = 3072  # text-embedding-3-large's size, the largest OpenAI model's
MAX_N = 128  # choices per request
MODERATION_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                         "sexual/minors", "violence", "violence/graphic")
_IMAGE_CATEGORIES = frozenset({"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence",
                               "violence/graphic"})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class StoredResponse:
    """A Response the fake returned with ``store``: the object itself and the input items it answered."""

    response: dict[str, Any]
    context: list[dict[str, Any]]


def text_tokens(text: str) -> int:
    """The fake's token count of a text: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def embedding_vector(value: str | list[int], dimensions: int) -> list[float]:
    """The fake's embedding of one input (a text or token ids): a function of the input alone, unit length, and
    every component a float32, so the float and the base64 answers carry exactly the same numbers."""
    seed = value.encode() if isinstance(value, str) else orjson.dumps(value)
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range((dimensions + 7) // 8))
    units = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(u * u for u in units)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(u / norm for u in units))))


def response_input_tokens(items: list[dict[str, Any]], instructions: str | None = None) -> int:
    """The fake's ``input_tokens`` of a Responses request: ``text_tokens`` of each input item's text plus 4, the
    same for ``instructions`` when given, plus 3 (the context includes a previous response's input and output)."""
    turns = [_item_text(item) for item in items] + ([instructions] if instructions else [])
    return sum(text_tokens(text) + 4 for text in turns) + 3


def _item_text(item: dict[str, Any]) -> str:
    if item.get("type") == "function_call":
        return f"{item.get('name', '')}{item.get('arguments', '')}"
    value = item.get("content", item.get("output", ""))
    if isinstance(value, list):
        return "".join(str(part.get("text", "")) for part in value if isinstance(part, dict))
    return value if isinstance(value, str) else ""


def word_pieces(text: str) -> list[str]:
    """The reply as the fake streams it: one piece (and one output token) per word, spaces leading."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, int) and not isinstance(i, bool)
                                                           for i in value)


def _text_or_ids(value: Any) -> list[str | list[int]] | None:
    """``input``/``prompt`` as a list of texts or token-id lists; None when the API would call it invalid."""
    if isinstance(value, str):
        return [value] if value else None
    if _is_ids(value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    if isinstance(value, list) and value and all(_is_ids(v) for v in value):
        return list(value)
    return None


def _count(value: str | list[int]) -> int:
    return len(value) if isinstance(value, list) else text_tokens(value)


@dataclass
class FakeOpenAI:
    """Knobs and records of one fake server; owned by one test, mutated only by it."""

    token: str = "sk-fake"
    model_prefix: str = ""
    reply: str = "Hello from the fake upstream, word by word."
    fail_status: int = 0
    fail_times: int = 0
    drop_connection: bool = False
    delay_s: float = 0.0
    die_after_chunks: int = -1
    cached_tokens: int = 0
    embedding_dimensions: int = 8
    tool_arguments: str = "{}"
    moderation_triggers: dict[str, str] = field(default_factory=lambda: {"kill": "violence"})
    requests: list[Received] = field(default_factory=list)
    stored: dict[str, StoredResponse] = field(default_factory=dict)
    base_url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/responses/{response_id}", self._stored_response)
        app.router.add_delete("/v1/responses/{response_id}", self._stored_response)
        app.router.add_post("/v1/moderations", self._moderations)
        return app

    async def _prelude(self, request: web.Request) -> tuple[dict[str, Any], web.StreamResponse | None]:
        """What every endpoint does first: record the request, check the token, refuse a body that is not a JSON
        object, then the ``delay_s``, ``drop_connection`` and ``fail_*`` knobs. The body, and the answer that ends
        the request (None: go on)."""
        raw = await request.read()
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        self.requests.append(Received(request.path, dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return body, _error(401, f"Incorrect API key provided: {request.headers.get('Authorization', '')[7:]}",
                                "invalid_request_error", "invalid_api_key")
        if not isinstance(parsed, dict):
            return body, _error(400, UNPARSABLE, "invalid_request_error", None)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return body, web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            if self.fail_status == 429:
                return body, _error(429, "Rate limit reached", "requests", "rate_limit_exceeded")
            if self.fail_status >= 500:
                return body, _error(self.fail_status, "The server had an error", "server_error", None)
            return body, _error(self.fail_status, "Invalid request", "invalid_request_error", "bad_request")
        return body, None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body["messages"]) + 3
        pieces = word_pieces(self.reply)
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces),
                 "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}
        ident, created = "chatcmpl-fake123", int(time.time())
        if not body.get("stream"):
            return web.json_response({
                "id": ident, "object": "chat.completion", "created": created, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage, "system_fingerprint": "fp_fake"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body["model"]}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return data_frame({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                    "finish_reason": finish}]})

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": p}) for p in pieces]
        chunks.append(chunk({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(data_frame({**base, "choices": [], "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        return await send_frames(request, resp, chunks, self.die_after_chunks)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        inputs = _text_or_ids(body.get("input"))
        if inputs is None:
            return _invalid(INVALID.format("input"))
        model, fmt, dimensions = body.get("model"), body.get("encoding_format") or "float", body.get("dimensions")
        if not model:
            return _invalid("you must provide a model parameter")
        if fmt not in ("float", "base64"):
            return _invalid(f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'")
        if dimensions is not None and model == "text-embedding-ada-002":
            return _invalid("This model does not support specifying dimensions.")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return _invalid(f"Invalid value for 'dimensions' = {dimensions}. Must be greater than 0.",
                            param="dimensions")
        if dimensions is not None and dimensions > MAX_DIMENSIONS:
            return _invalid(f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal to "
                            f"{MAX_DIMENSIONS}.", param="dimensions")
        size = dimensions or self.embedding_dimensions
        data = []
        for index, value in enumerate(inputs):
            vector = embedding_vector(value, size)
            encoded = (base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() if fmt == "base64" else vector)
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(_count(value) for value in inputs)
        return _json({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        prompts = _text_or_ids(body.get("prompt", "<|endoftext|>"))
        if prompts is None:
            return _invalid(INVALID.format("prompt"))
        if not body.get("model"):
            return _invalid("you must provide a model parameter")
        max_tokens, n = body.get("max_tokens") or 16, body.get("n") or 1
        if not isinstance(n, int) or n > MAX_N:
            return _invalid(f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got {n} "
                            "instead.", param="n", code="integer_above_max_value")
        pieces = word_pieces(self.reply)
        finish = "length" if len(pieces) > max_tokens else "stop"
        pieces = pieces[:max_tokens]
        echoes = [p if body.get("echo") and isinstance(p, str) else "" for p in prompts for _ in range(n)]
        prompt_tokens = sum(_count(p) for p in prompts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces) * len(echoes),
                 "total_tokens": prompt_tokens + len(pieces) * len(echoes)}
        base = {"id": f"cmpl-{token_hex(14)}", "object": "text_completion", "created": int(time.time()),
                "model": body["model"]}
        if not body.get("stream"):
            return _json({**base, "choices": [{"text": echo + "".join(pieces), "index": i, "logprobs": None,
                                               "finish_reason": finish} for i, echo in enumerate(echoes)],
                          "usage": usage, "system_fingerprint": None})
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(index: int, text: str, finish_reason: str | None = None) -> bytes:
            data = {**base, "choices": [{"text": text, "index": index, "logprobs": None,
                                         "finish_reason": finish_reason}], "system_fingerprint": None}
            return data_frame({**data, "usage": None} if with_usage else data)

        chunks = []
        for index, echo in enumerate(echoes):
            chunks += [chunk(index, text) for text in ([echo] if echo else []) + pieces]
            chunks.append(chunk(index, "", finish))
        if with_usage:
            chunks.append(data_frame({**base, "choices": [], "system_fingerprint": None, "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        return await send_frames(request, resp, chunks, self.die_after_chunks)

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

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._prelude(request)
        if answer is not None:
            return answer
        given, model = body.get("input"), body.get("model") or "omni-moderation-latest"
        groups: list[tuple[str, bool]] | None = None
        if isinstance(given, str) or (isinstance(given, list) and given and all(isinstance(g, str) for g in given)):
            groups = [(text, False) for text in ([given] if isinstance(given, str) else given)]
        elif isinstance(given, list) and given and all(isinstance(g, dict) for g in given):
            kinds = {part.get("type") for part in given}
            if kinds <= {"text", "image_url"}:
                text = "\n".join(str(part.get("text", "")) for part in given if part.get("type") == "text")
                groups = [(text, "image_url" in kinds)]
        if groups is None:
            return _invalid(INVALID.format("input"))
        results = [self._moderate(text, image, model.startswith("omni")) for text, image in groups]
        return _json({"id": f"modr-{token_hex(16)}", "model": model, "results": results})

    def _moderate(self, text: str, image: bool, omni: bool) -> dict[str, Any]:
        hits = {category for word, category in self.moderation_triggers.items() if word.lower() in text.lower()}
        result: dict[str, Any] = {
            "flagged": bool(hits), "categories": {c: c in hits for c in MODERATION_CATEGORIES},
            "category_scores": {c: 0.9 if c in hits else 1e-06 for c in MODERATION_CATEGORIES}}
        if omni:
            result["category_applied_input_types"] = {
                c: (["text"] if text else []) + (["image"] if image and c in _IMAGE_CATEGORIES else [])
                for c in MODERATION_CATEGORIES}
        return result


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


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": type_, "param": param, "code": code}},
                             status=status)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> web.Response:
    return _error(400, message, "invalid_request_error", code, param)


@asynccontextmanager
async def fake_openai(token: str = "sk-fake") -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI(token=token)
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()
