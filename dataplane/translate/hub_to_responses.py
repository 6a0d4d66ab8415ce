"""Outbound translation: the hub's answer (a chat completion, or chat completion chunks) for a Responses API
client, in the Responses API's own shapes. Pure: no I/O, no clock, no randomness.

``response_object`` turns a chat completion into the Response object ``POST /v1/responses`` returns;
``ResponsesEventWriter`` turns chat completion chunk payloads into the Responses SSE stream, one writer per
stream. Both take the client's original Responses request, whose settings a Response echoes (``tools`` in the
Responses form, ``tool_choice``, ``text``, ``reasoning``...), and a ``response_id`` chosen by the caller: item ids
are derived from it and the output index (``msg_<id>_<n>``, ``fc_<id>_<n>``), so the same answer gets the same ids
streamed or not.

Faithful to the API where the hub can say it: a finish reason ``length`` is ``status: "incomplete"`` with
``incomplete_details.reason: "max_output_tokens"``, ``content_filter`` likewise, and the stream then ends with
``response.incomplete`` (what the API sends and the Agents SDK takes as the terminal event) instead of
``response.completed``. Answers say ``store: false``: nothing is kept (the installed SDK's schema no longer names
``store``; the API still sends it). Not produced: reasoning items (chat completions returns no reasoning summary),
annotations in a stream, and ``completed_at`` (there is no clock here).

The stream's order is the API's: ``response.created``, ``response.in_progress``; per message item
``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta`` (or
``response.refusal.delta``) ..., ``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``; per function call ``response.output_item.added``,
``response.function_call_arguments.delta`` ..., ``response.function_call_arguments.done``,
``response.output_item.done``; then ``response.completed`` (or ``response.incomplete``) with the whole response
and its usage. A message item is done when the first tool call starts (text after that opens a new message
item). Function calls stay open until the end, because chat chunks may interleave several calls' arguments (by
``tool_calls[].index``); their deltas carry their own ``output_index``, which is all a client keys on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.translate.anthropic_common import count

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# ``Response.error.code`` is a closed set in the API's schema; anything else is reported as a server error there
# (the ``error`` event keeps the gateway's own code).
RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def _item_id(prefix: str, response_id: str, index: int) -> str:
    return f"{prefix}_{response_id.removeprefix('resp_')}_{index}"


def response_object(completion: dict[str, Any], request: dict[str, Any], response_id: str,
                    created_at: int) -> dict[str, Any]:
    """The Response object for a chat completion (its first choice), as ``POST /v1/responses`` returns it."""
    choices = completion.get("choices")
    choice = _obj(choices[0]) if isinstance(choices, list) and choices else {}
    message = _obj(choice.get("message"))
    status, incomplete = _status(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(_text_part(message["content"], _chat_logprobs(choice), _annotations(message)))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(_message_item(_item_id("msg", response_id, 0), "completed", parts))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            fn = call["function"]
            index = len(output)
            call_id = str(call.get("id") or _item_id("call", response_id, index))
            output.append(_call_item(_item_id("fc", response_id, index), call_id, str(fn.get("name") or ""),
                                    str(fn.get("arguments") or ""), "completed"))
    if incomplete is not None and output:
        output[-1]["status"] = "incomplete"  # generation stopped inside the last item
    model = completion.get("model") if isinstance(completion.get("model"), str) else None
    return {**_echo(request, response_id, created_at, model), "status": status,
            "incomplete_details": None if incomplete is None else {"reason": incomplete},
            "output": output, "usage": responses_usage(completion.get("usage"))}


def _echo(request: dict[str, Any], response_id: str, created_at: int, model: str | None) -> dict[str, Any]:
    """The fields of a Response that restate the request (the API's defaults where the client sent nothing)."""
    reasoning, text = _obj(request.get("reasoning")), _obj(request.get("text"))
    limit = request.get("max_output_tokens")
    metadata = request.get("metadata")
    parallel = request.get("parallel_tool_calls")
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": "in_progress",
        "background": False, "error": None, "incomplete_details": None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "max_output_tokens": limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        "max_tool_calls": None,
        "model": model or str(request.get("model") or ""), "output": [],
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True, "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False, "temperature": _number(request.get("temperature")),
        "text": {"format": text.get("format") if isinstance(text.get("format"), dict) else {"type": "text"},
                 "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": _echo_tool_choice(request.get("tool_choice")), "tools": _echo_tools(request.get("tools")),
        "top_logprobs": request.get("top_logprobs") if isinstance(request.get("top_logprobs"), int) else 0,
        "top_p": _number(request.get("top_p")), "truncation": "disabled", "usage": None,
        "user": request.get("user") if isinstance(request.get("user"), str) else None,
        "metadata": metadata if isinstance(metadata, dict) else {},
    }


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _number(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 1.0


def _echo_tools(tools: Any) -> list[dict[str, Any]]:
    """The request's function tools, in the Responses form (the only tools a translated request can have)."""
    out: list[dict[str, Any]] = []
    for t in tools if isinstance(tools, list) else []:
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str):
            out.append({"type": "function", "name": t["name"], "description": t.get("description"),
                        "parameters": t.get("parameters"), "strict": t.get("strict")})
    return out


def _echo_tool_choice(choice: Any) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, dict) and choice.get("type") in ("function", "allowed_tools"):
        return choice
    return "auto"


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """The Responses ``usage`` for a chat ``usage``; None when the upstream reported none."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _obj(usage.get("prompt_tokens_details")), _obj(usage.get("completion_tokens_details"))
    input_tokens, output_tokens = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    # cache_write_tokens is required by the SDK's schema; chat upstreams that write caches report it too.
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": count(prompt.get("cached_tokens")),
                                     "cache_write_tokens": count(prompt.get("cache_write_tokens"))},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": count(completion.get("reasoning_tokens"))},
            "total_tokens": count(usage.get("total_tokens")) or input_tokens + output_tokens}


def _status(finish_reason: Any) -> tuple[str, str | None]:
    reason = INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("completed", None) if reason is None else ("incomplete", reason)


def _text_part(text: str, logprobs: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations,
            "logprobs": [_part_logprob(lp) for lp in logprobs]}


def _message_item(id_: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "id": id_, "status": status, "role": "assistant", "content": content}


def _call_item(id_: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": id_, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _chat_logprobs(choice: dict[str, Any]) -> list[dict[str, Any]]:
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return [lp for lp in content if isinstance(lp, dict)] if isinstance(content, list) else []


def _part_logprob(lp: dict[str, Any]) -> dict[str, Any]:
    """A chat token logprob in an ``output_text`` part (``bytes`` is required there)."""
    return {"token": str(lp.get("token", "")), "bytes": lp.get("bytes") or [], "logprob": lp.get("logprob", 0.0),
            "top_logprobs": [{"token": str(t.get("token", "")), "bytes": t.get("bytes") or [],
                              "logprob": t.get("logprob", 0.0)}
                             for t in lp.get("top_logprobs") or [] if isinstance(t, dict)]}


def _event_logprob(lp: dict[str, Any]) -> dict[str, Any]:
    """A chat token logprob in a text delta/done event (no ``bytes`` there)."""
    return {"token": str(lp.get("token", "")), "logprob": lp.get("logprob", 0.0),
            "top_logprobs": [{"token": t.get("token"), "logprob": t.get("logprob")}
                             for t in lp.get("top_logprobs") or [] if isinstance(t, dict)]}


def _annotations(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Chat ``url_citation`` annotations (search models) in the Responses form; others have no Responses form."""
    out: list[dict[str, Any]] = []
    for a in message.get("annotations") or []:
        cite = a.get("url_citation") if isinstance(a, dict) and a.get("type") == "url_citation" else None
        if isinstance(cite, dict):
            out.append({"type": "url_citation", "start_index": count(cite.get("start_index")),
                        "end_index": count(cite.get("end_index")), "title": str(cite.get("title") or ""),
                        "url": str(cite.get("url") or "")})
    return out


def _sse_event(kind: str, sequence_number: int, data: dict[str, Any]) -> bytes:
    return (b"event: " + kind.encode() + b"\ndata: "
            + orjson.dumps({"type": kind, "sequence_number": sequence_number, **data}) + b"\n\n")


def error_event(sequence_number: int, message: str, code: str) -> bytes:
    """The ``error`` event ending a failed stream: the documented fields at the top and the same ones under
    ``error``, the shape the API sends and the one the openai SDK raises ``APIError`` on."""
    return _sse_event("error", sequence_number, {"code": code, "message": message, "param": None, "error": {
        "type": "server_error", "code": code, "message": message, "param": None}})


@dataclass(slots=True)
class _Message:
    """The message item being streamed: its closed content parts and the one open part."""

    output_index: int
    id: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    kind: str | None = None  # the open part: "output_text" or "refusal"
    pieces: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    def open_part(self) -> dict[str, Any]:
        text = "".join(self.pieces)
        return _text_part(text, self.logprobs, []) if self.kind == "output_text" else {
            "type": "refusal", "refusal": text}


@dataclass(slots=True)
class _Call:
    """A function call item being streamed."""

    output_index: int
    id: str
    call_id: str
    name: str
    pieces: list[str] = field(default_factory=list)

    def item(self, status: str) -> dict[str, Any]:
        return _call_item(self.id, self.call_id, self.name, "".join(self.pieces), status)


class ResponsesEventWriter:
    """Chat completion chunk payloads in, Responses SSE events out: one writer per stream, used by one task.

    ``feed`` takes one chunk payload (the JSON of one upstream ``data:`` line, the usage-only chunk included) and
    returns the complete SSE events it makes, in order; ``finish`` ends a stream the upstream completed and
    ``error`` one it did not. Either may be called once; after it the writer returns nothing. Each call costs
    O(size of its input): the whole response is serialized once, in the terminal event.
    """

    __slots__ = ("_base", "_calls", "_ended", "_finish", "_id", "_items", "_message", "_seq", "_started", "_usage")

    def __init__(self, response_id: str, request: dict[str, Any], created_at: int) -> None:
        self._id = response_id
        self._base = _echo(request, response_id, created_at, None)  # what every lifecycle event restates
        self._started = False
        self._seq = 0
        self._items: list[dict[str, Any] | None] = []  # the output by index; None while the item is open
        self._message: _Message | None = None
        self._calls: dict[int, _Call] = {}  # open function calls by chat tool call index
        self._finish: Any = None
        self._usage: Any = None
        self._ended = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._ended:
            return []
        try:
            data = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(data, dict):
            return []
        out = self._start(data.get("model"))
        if isinstance(data.get("usage"), dict):
            self._usage = data["usage"]
        for choice in data.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:  # a Responses answer has one choice
                out += self._choice(choice)
        return out

    def finish(self) -> list[bytes]:
        """The closing events of every open item, then ``response.completed`` (or ``response.incomplete``)."""
        if self._ended:
            return []
        out = self._start(None)
        self._ended = True
        status, incomplete = _status(self._finish)
        last = len(self._items) - 1
        for open_item in self._open_items():
            item_status = "incomplete" if incomplete is not None and open_item.output_index == last else "completed"
            out += (self._close_message(item_status) if isinstance(open_item, _Message)
                    else self._close_call(open_item, item_status))
        self._calls.clear()
        response = {**self._base, "status": status,
                    "incomplete_details": None if incomplete is None else {"reason": incomplete},
                    "output": [item for item in self._items if item is not None],
                    "usage": responses_usage(self._usage)}
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": response}))
        return out

    def error(self, message: str, code: str) -> list[bytes]:
        """``response.failed`` (status failed, the output so far), then an ``error`` event (``error_event``): a
        client iterating the stream sees the failed response, and then the stream raises instead of ending as if
        it had completed.
        """
        if self._ended:
            return []
        out = self._start(None)
        self._ended = True
        partial = {i.output_index: _snapshot(i) for i in self._open_items()}
        output = [item if item is not None else partial[n] for n, item in enumerate(self._items)]
        response = {**self._base, "status": "failed", "output": output, "usage": responses_usage(self._usage),
                    "error": {"code": code if code in RESPONSE_ERROR_CODES else "server_error", "message": message}}
        out.append(self._event("response.failed", {"response": response}))
        out.append(error_event(self._seq, message, code))
        self._seq += 1
        return out

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        event = _sse_event(kind, self._seq, data)
        self._seq += 1
        return event

    def _start(self, model: Any) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        if isinstance(model, str) and model:
            self._base["model"] = model  # the upstream's resolved model name, as the API reports it
        return [self._event("response.created", {"response": self._base}),
                self._event("response.in_progress", {"response": self._base})]

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        delta = _obj(choice.get("delta"))
        logprobs = _chat_logprobs(choice)
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text("output_text", delta["content"], logprobs)
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            out += self._text("refusal", delta["refusal"], [])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._call(call)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        return out

    def _open_items(self) -> list[_Message | _Call]:
        items: list[_Message | _Call] = list(self._calls.values())
        if self._message is not None:
            items.append(self._message)
        return sorted(items, key=lambda i: i.output_index)

    def _new_index(self) -> int:
        self._items.append(None)
        return len(self._items) - 1

    def _text(self, kind: str, text: str, logprobs: list[dict[str, Any]]) -> list[bytes]:
        out: list[bytes] = []
        msg = self._message
        if msg is None:
            n = self._new_index()
            msg = self._message = _Message(n, _item_id("msg", self._id, n))
            out.append(self._event("response.output_item.added", {
                "output_index": n, "item": _message_item(msg.id, "in_progress", [])}))
        if msg.kind != kind:
            out += self._close_part(msg)
            msg.kind = kind
            out.append(self._event("response.content_part.added", {
                **_where(msg), "part": _text_part("", [], []) if kind == "output_text" else {
                    "type": "refusal", "refusal": ""}}))
        msg.pieces.append(text)
        if kind == "refusal":
            out.append(self._event("response.refusal.delta", {**_where(msg), "delta": text}))
            return out
        msg.logprobs += logprobs
        out.append(self._event("response.output_text.delta", {
            **_where(msg), "delta": text, "logprobs": [_event_logprob(lp) for lp in logprobs]}))
        return out

    def _close_part(self, msg: _Message) -> list[bytes]:
        if msg.kind is None:
            return []
        part = msg.open_part()
        where = _where(msg)
        done = (self._event("response.output_text.done", {**where, "text": part["text"], "logprobs": [
            _event_logprob(lp) for lp in msg.logprobs]}) if msg.kind == "output_text"
            else self._event("response.refusal.done", {**where, "refusal": part["refusal"]}))
        msg.parts.append(part)
        msg.kind, msg.pieces, msg.logprobs = None, [], []
        return [done, self._event("response.content_part.done", {**where, "part": part})]

    def _close_message(self, status: str) -> list[bytes]:
        msg = self._message
        if msg is None:
            return []
        out = self._close_part(msg)
        item = _message_item(msg.id, status, msg.parts)
        self._items[msg.output_index] = item
        self._message = None
        out.append(self._event("response.output_item.done", {"output_index": msg.output_index, "item": item}))
        return out

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        index = call["index"] if isinstance(call.get("index"), int) else 0
        fn = _obj(call.get("function"))
        out: list[bytes] = []
        open_call = self._calls.get(index)
        if open_call is None:
            # The API finishes a message item before a function call item starts; so does this stream.
            out += self._close_message("completed")
            n = self._new_index()
            open_call = _Call(n, _item_id("fc", self._id, n), str(call.get("id") or _item_id("call", self._id, n)),
                              str(fn.get("name") or ""))
            self._calls[index] = open_call
            out.append(self._event("response.output_item.added", {
                "output_index": n, "item": open_call.item("in_progress")}))
        elif not open_call.name and isinstance(fn.get("name"), str):
            open_call.name = fn["name"]
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            open_call.pieces.append(arguments)
            out.append(self._event("response.function_call_arguments.delta", {
                "item_id": open_call.id, "output_index": open_call.output_index, "delta": arguments}))
        return out

    def _close_call(self, call: _Call, status: str) -> list[bytes]:
        item = call.item(status)
        self._items[call.output_index] = item
        return [self._event("response.function_call_arguments.done", {
                    "item_id": call.id, "output_index": call.output_index, "arguments": item["arguments"]}),
                self._event("response.output_item.done", {"output_index": call.output_index, "item": item})]


def _where(msg: _Message) -> dict[str, Any]:
    """Where the open content part of a streamed message is, as every part event says it."""
    return {"item_id": msg.id, "output_index": msg.output_index, "content_index": len(msg.parts)}


def _snapshot(item: _Message | _Call) -> dict[str, Any]:
    """An open item as it stands when the stream dies."""
    if isinstance(item, _Call):
        return item.item("incomplete")
    parts = [*item.parts, item.open_part()] if item.kind is not None else item.parts
    return _message_item(item.id, "incomplete", parts)
