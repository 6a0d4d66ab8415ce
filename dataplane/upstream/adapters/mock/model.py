"""The mock provider's model: pure functions from an OpenAI request body to the exact OpenAI answer, offline.

This module holds the chat answers; ``text`` the token counts and text, ``schema`` the JSON-schema values,
``surfaces`` legacy completions, embeddings and moderations.

Contract: every function is a function of its arguments only (no clock, no I/O, no randomness: whatever looks
random is derived from the input with hashlib, so the same request always gets the same answer) and returns a
JSON-ready dict (or a list of them) in the OpenAI wire format. Input an endpoint would reject raises
``ValueError`` with a message fit for a 400. ``mock.py`` supplies the id, the clock, the output limit and the pace.

Chat completions (``chat_completion``; ``chat_chunks`` is the same answer as a stream):

- A plain prompt gets a short echo of the last user message, cut at the output limit (finish ``length``) or at a
  ``stop`` sequence. Tokens are about four characters (``count_tokens``), as ``mock.py`` always counted them.
- Offered function ``tools`` are called when ``tool_choice`` is ``required`` or names a function, or when it is
  ``auto``/absent and the last user message asks for it (says "call", "use the", "weather", a tool's name...),
  unless the last message already is a ``tool`` result. Arguments are generated from the tool's ``parameters``
  schema (``schema_instance``) with values taken from the prompt where a property's name fits (a ``city`` gets
  "Paris" from "weather in Paris"); several places asked about give parallel calls unless
  ``parallel_tool_calls`` is false. After ``tool`` results the answer is text quoting them, so agent loops end.
- ``response_format`` ``json_schema`` gets JSON valid against the schema; ``json_object`` a small JSON object.
- ``n`` gives that many slightly different choices; ``logprobs``/``top_logprobs`` give per-token log
  probabilities; ``usage`` counts the prompt (``prompt_tokens``) and every generated token.

Also: ``embeddings`` (deterministic unit vectors in which texts sharing words are similar; ``base64`` as
little-endian float32), ``text_completion``/``text_completion_chunks`` (legacy ``/v1/completions``),
``moderation`` (flags a short list of marker phrases) and ``count_message_tokens`` (an Anthropic body's input
tokens, as the mock will report them once the body is translated to chat completions).
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import orjson

from dataplane.upstream.adapters.mock.schema import _instance
from dataplane.upstream.adapters.mock.text import (
    _ARGUMENT_FRAGMENTS,
    _ECHO_PREFIXES,
    _FILLER_TOKENS,
    _GENERIC_VERBS,
    _MAX_N,
    _MAX_PARALLEL_CALLS,
    _MAX_TOP_LOGPROBS,
    _PLACE_WORDS,
    _RESULT_LEADS,
    _TRIGGER,
    _digest,
    _echo,
    _finish,
    _Hints,
    _hints,
    _name_words,
    _positive_int,
    _stops,
    _text_of,
    _unit,
    _variant_prefix,
    count_tokens,
    prompt_tokens,
    split_pieces,
)

# -- tools --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    id: str
    name: str
    arguments: str

    def tokens(self) -> int:
        return count_tokens(self.name) + count_tokens(self.arguments)

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def _functions(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """The offered function tools: (name, parameters schema)."""
    out: list[tuple[str, Any]] = []
    for tool in payload.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            out.append((fn["name"], fn.get("parameters") or {"type": "object", "properties": {}}))
    return out


def _tool_name(tool: dict[str, Any]) -> str:
    """The name an ``allowed_tools`` entry gives (``""`` when it gives none)."""
    fn = tool.get("function")
    name = (fn.get("name") if isinstance(fn, dict) else None) or tool.get("name")
    return name if isinstance(name, str) else ""


def _mentioned(name: str, lower: str) -> bool:
    words = _name_words(name)
    if name.lower() in lower or (words and " ".join(words) in lower):
        return True
    specific = [w for w in words if w not in _GENERIC_VERBS]
    return bool(specific) and all(re.search(rf"\b{re.escape(w)}", lower) for w in specific)


def _chosen_tools(payload: dict[str, Any], hints: _Hints) -> list[tuple[str, Any]]:
    """The tools this turn calls (none after a tool result: the model answers with what it got)."""
    tools = _functions(payload)
    messages = payload.get("messages") or [{}]
    if not tools or not isinstance(messages[-1], dict) or messages[-1].get("role") == "tool":
        return []
    choice = payload.get("tool_choice", "auto")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        allowed = allowed if isinstance(allowed, dict) else {}
        listed = allowed.get("tools")
        names = {_tool_name(t) for t in listed if isinstance(t, dict)} if isinstance(listed, list) else set()
        tools = [t for t in tools if t[0] in names]
        choice = allowed.get("mode", "auto")
    elif isinstance(choice, dict):
        fn = choice.get("function")
        wanted = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        return [t for t in tools if t[0] == wanted][:1]
    if choice == "none" or not tools:
        return []
    lower = hints.text.lower()
    mentioned = [t for t in tools if _mentioned(t[0], lower)]
    if choice == "required":
        return mentioned or tools[:1]
    return mentioned or (tools[:1] if _TRIGGER.search(lower) else [])


def _takes_place(schema: Any) -> bool:
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return isinstance(props, Mapping) and any(_PLACE_WORDS.intersection(_name_words(n)) for n in props)


def _calls(payload: dict[str, Any], hints: _Hints, seed: str, choice: int) -> list[_Call]:
    chosen = _chosen_tools(payload, hints)
    parallel = payload.get("parallel_tool_calls") is not False
    plan: list[tuple[str, Any, int]] = []
    for name, schema in chosen:
        # One call per place asked about ("weather in Paris and Tokyo"), as models do with parallel calls.
        spread = len(hints.places) if parallel and len(chosen) == 1 and _takes_place(schema) else 1
        plan.extend((name, schema, k) for k in range(max(1, spread)))
    if not parallel:
        plan = plan[:1]
    return [_Call(id="call_" + _digest(seed, str(choice), str(i), name)[:24], name=name,
                  arguments=orjson.dumps(_instance(schema, hints, k)).decode())
            for i, (name, schema, k) in enumerate(plan[:_MAX_PARALLEL_CALLS])]


def _fit_calls(calls: list[_Call], limit: int | None) -> tuple[list[_Call], str]:
    """The calls that fit in ``limit`` tokens (the first one cut short if even it does not), and the finish."""
    if limit is None:
        return calls, "tool_calls"
    out: list[_Call] = []
    used = 0
    for call in calls:
        used += call.tokens()
        if used > limit:
            if out:
                return out, "length"
            room = max(0, limit - count_tokens(call.name)) * 4
            return [dataclasses.replace(call, arguments=call.arguments[:room])], "length"
        out.append(call)
    return out, "tool_calls"


def _tool_results(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The trailing ``tool`` messages: (tool name, result text)."""
    messages = [m for m in payload.get("messages") or () if isinstance(m, dict)]
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name", "the tool"))
    results: list[tuple[str, str]] = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.append((names.get(str(m.get("tool_call_id")), "the tool"), _text_of(m.get("content"))))
    return results[::-1]


def _result_sentence(results: list[tuple[str, str]], variant: int) -> str:
    lead = _RESULT_LEADS[variant % len(_RESULT_LEADS)] + (f" (answer {variant + 1})" if variant >= 3 else "")
    if len(results) == 1:
        name, content = results[0]
        return f"{lead} the {name} result: {content}"
    return f"{lead} the tool results: " + "; ".join(f"{name}: {content}" for name, content in results)


# -- logprobs -------------------------------------------------------------------------------------------------------


def _alternatives(token: str, count: int) -> list[str]:
    seen = {token}
    out: list[str] = []
    for alt in (token.strip(), token.lower(), token.upper(), token.capitalize(), " " + token.strip(),
                *_FILLER_TOKENS):
        if len(out) >= count:
            break
        if alt and alt not in seen:
            seen.add(alt)
            out.append(alt)
    return out


def _logprob(token: str, top: int, *salt: str) -> dict[str, Any]:
    # The sampled token is likely (p >= 0.5); the alternatives share what is left, halving each time.
    chosen = -round(0.69 * _unit(token, *salt) ** 2, 6)
    rest = max(1e-6, 1 - math.exp(chosen))
    ranked = [(token, chosen)] + [(alt, round(math.log(rest * 0.5 ** (j + 1)), 6))
                                  for j, alt in enumerate(_alternatives(token, top - 1))]
    return {"token": token, "logprob": chosen, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked[:top]]}


def _piece_logprobs(piece: str, top: int, salt: str, position: int) -> list[dict[str, Any]]:
    """One entry per token of a piece (four characters each, as ``count_tokens`` counts)."""
    return [_logprob(piece[i:i + 4], top, salt, str(position), str(i)) for i in range(0, len(piece), 4)]


def _top_logprobs(payload: dict[str, Any]) -> int | None:
    """How many alternatives per token, or None when logprobs were not asked for."""
    if payload.get("logprobs") is not True:
        return None
    top = payload.get("top_logprobs")
    return min(top, _MAX_TOP_LOGPROBS) if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0


# -- chat completions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Choice:
    pieces: tuple[str, ...]
    calls: tuple[_Call, ...]
    finish: str
    logprobs: tuple[tuple[dict[str, Any], ...], ...] | None  # per piece, when asked for

    @property
    def content(self) -> str | None:
        return None if self.calls and not self.pieces else "".join(self.pieces)

    def tokens(self) -> int:
        return sum(count_tokens(p) for p in self.pieces) + sum(c.tokens() for c in self.calls)

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.calls:
            message["tool_calls"] = [c.wire() for c in self.calls]
        return message

    def wire_logprobs(self) -> dict[str, Any] | None:
        if self.logprobs is None or self.calls:
            return None
        return {"content": [e for piece in self.logprobs for e in piece], "refusal": None}


def _content_pieces(payload: dict[str, Any], hints: _Hints, variant: int) -> list[str]:
    results = _tool_results(payload)
    answer = _result_sentence(results, variant) if results else None
    fmt = payload.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("json_schema", "json_object"):
        answer = answer or "".join(_echo(_variant_prefix(_ECHO_PREFIXES, variant), hints.text))
        if kind == "json_schema":
            spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
            schema = spec.get("schema") if isinstance(spec, dict) else None
            value = _instance(schema or {"type": "object"}, dataclasses.replace(hints, answer=answer), variant)
        else:
            value = {"response": answer}
        return split_pieces(orjson.dumps(value).decode())
    if answer is not None:
        return split_pieces(answer)
    return split_pieces("".join(_echo(_variant_prefix(_ECHO_PREFIXES, variant), hints.text)))


def _chat_choices(payload: dict[str, Any], limit: int | None) -> list[_Choice]:
    hints = _hints(payload)
    seed = _digest(orjson.dumps(payload.get("messages"), option=orjson.OPT_SORT_KEYS, default=str).decode())
    top = _top_logprobs(payload)
    choices: list[_Choice] = []
    for i in range(_positive_int(payload.get("n"), 1, _MAX_N)):
        calls = _calls(payload, hints, seed, i)
        if calls:
            fitted, finish = _fit_calls(calls, limit)
            choices.append(_Choice((), tuple(fitted), finish, None))
            continue
        pieces, finish = _finish(_content_pieces(payload, hints, i), limit, _stops(payload))
        logprobs = None if top is None else tuple(
            tuple(_piece_logprobs(p, top, f"{seed}|{i}", k)) for k, p in enumerate(pieces))
        choices.append(_Choice(tuple(pieces), (), finish, logprobs))
    return choices


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def chat_completion(payload: dict[str, Any], model: str, ident: str, created: int,
                    max_tokens: int | None) -> dict[str, Any]:
    """The ``chat.completion`` answer to a chat completion body (``max_tokens``: the output limit per choice)."""
    choices = _chat_choices(payload, max_tokens)
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": i, "message": c.message(), "logprobs": c.wire_logprobs(), "finish_reason": c.finish}
                        for i, c in enumerate(choices)],
            "usage": _usage(prompt_tokens(payload), sum(c.tokens() for c in choices)), "system_fingerprint": None}


def _fragments(text: str, parts: int) -> list[str]:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _deltas(choice: _Choice) -> list[tuple[dict[str, Any], dict[str, Any] | None, str | None]]:
    """One choice's stream: (delta, logprobs, finish_reason) per chunk."""
    if choice.calls:
        out: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]] = [
            ({"role": "assistant", "content": None, "refusal": None}, None, None)]
        for k, call in enumerate(choice.calls):
            out.append(({"tool_calls": [{"index": k, "id": call.id, "type": "function",
                                         "function": {"name": call.name, "arguments": ""}}]}, None, None))
            out.extend(({"tool_calls": [{"index": k, "function": {"arguments": part}}]}, None, None)
                       for part in _fragments(call.arguments, _ARGUMENT_FRAGMENTS))
    else:
        out = [({"role": "assistant", "content": "", "refusal": None}, None, None)]
        for k, piece in enumerate(choice.pieces):
            logprobs = None if choice.logprobs is None else {"content": list(choice.logprobs[k]), "refusal": None}
            out.append(({"content": piece}, logprobs, None))
    out.append(({}, None, choice.finish))
    return out


def chat_chunks(payload: dict[str, Any], model: str, ident: str, created: int,
                max_tokens: int | None) -> list[dict[str, Any]]:
    """The same answer as ``chat_completion``, as ``chat.completion.chunk`` objects in streaming order (choices
    interleaved, each opened in index order), ending with a usage-only chunk (``choices: []``)."""
    choices = _chat_choices(payload, max_tokens)
    base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None}
    chunks: list[dict[str, Any]] = []
    for step in zip_longest(*(_deltas(c) for c in choices)):
        for index, event in enumerate(step):
            if event is not None:
                delta, logprobs, finish = event
                chunks.append({**base, "choices": [
                    {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]})
    chunks.append({**base, "choices": [], "usage": _usage(prompt_tokens(payload), sum(c.tokens() for c in choices))})
    return chunks
