"""The mock provider's model: pure functions from an OpenAI request body to the exact OpenAI answer, offline.

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

import base64
import dataclasses
import hashlib
import math
import operator
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import orjson

from dataplane.translate.anthropic_to_hub import openai_request

_DEFAULT_REPLY_WORDS = 24
_LEGACY_DEFAULT_MAX_TOKENS = 16  # what /v1/completions defaults max_tokens to
_MAX_N = 128
_MAX_TOP_LOGPROBS = 20
_MAX_LEGACY_LOGPROBS = 5
_MAX_PARALLEL_CALLS = 8
_MAX_DEPTH = 16  # schema nesting followed before settling for a minimal value (recursive $refs)
_OPTIONAL_DEPTH = 4  # below this, optional properties are left out so recursive schemas stay small
_ARGUMENT_FRAGMENTS = 3

_ECHO_PREFIXES = ("This is a mock response to:", "Here is another mock response to:", "One more mock response to:")
_COMPLETION_PREFIXES = ("This is a mock completion of:", "Another mock completion of:", "One more mock completion of:")
_RESULT_LEADS = ("Based on", "According to", "Going by")

_PIECE = re.compile(r"\s*\S{1,12}|\s+")
_WORD = re.compile(r"\w+")
_TRIGGER = re.compile(
    r"\b(?:call|invoke|use (?:the|a|an|your|my)|weather|look up|lookup|search|fetch)\b")
_PHRASE = r"[A-Z][\w'\u2019.-]*(?:[ \t]+[A-Z][\w'\u2019.-]*)*"
_SEPARATOR = r"\s*,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+"
_PLACE_LIST = re.compile(rf"\b(?:in|at|for|to|from|near|around|of)\s+({_PHRASE}(?:(?:{_SEPARATOR}){_PHRASE})*)")
_LOWER_PLACE = re.compile(r"\b(?:in|at)\s+([a-z][a-z-]{2,})\b")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")

_NOT_PLACES = frozenset({
    "i", "the", "a", "an", "my", "your", "our", "this", "that", "it", "me", "you", "call", "use", "please", "tool",
    "what", "json", "celsius", "fahrenheit", "general", "order", "detail", "details", "english", "fact", "case",
    "time", "total", "advance", "addition", "mind", "short", "brief", "return", "response", "text", "mock"})
_STOPWORDS = frozenset({
    "the", "a", "an", "is", "are", "was", "of", "to", "in", "on", "for", "and", "or", "it", "this", "that", "with",
    "please", "me", "my", "your", "tool", "call", "use", "be", "by", "at", "as", "what", "what's", "whats"})
_GENERIC_VERBS = frozenset({
    "get", "set", "fetch", "list", "create", "update", "delete", "find", "lookup", "look", "up", "search", "run",
    "do", "make", "query", "call", "retrieve", "read", "write", "add", "remove", "check", "compute", "calculate",
    "send", "current", "tool", "function", "by", "for", "of", "the", "a", "to"})
_PLACE_WORDS = frozenset({
    "city", "cities", "location", "locations", "place", "places", "town", "towns", "destination", "destinations",
    "origin", "address", "country", "countries", "region", "where", "venue"})
_QUERY_WORDS = frozenset({"query", "q", "question", "prompt", "search", "keywords", "keyword", "term", "terms",
                          "input", "topic", "text", "request", "instruction", "instructions"})
_ANSWER_WORDS = frozenset({"answer", "response", "reply", "summary", "explanation", "reasoning", "description",
                           "content", "message", "result", "output", "comment", "body", "analysis", "final"})
_FILLER_TOKENS = (" the", " a", " and", ",", ".", " of", " to", " is", " in", " it", " that", " for", " on",
                  " with", " as", " this", " was", " be", " at", " by", " or")

# Moderation: OpenAI's categories (the keys of openai.types.Moderation) and the phrases that flag each. A flagged
# sub-category ("a/b") flags its parent too, as OpenAI's classifier effectively does.
_MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
    "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence", "violence/graphic")
_IMAGE_CATEGORIES = frozenset({"self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence",
                               "violence/graphic"})
_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("violence", ("murder", "massacre", "slaughter", "stab", "kill you", "kill him", "kill her", "kill them",
                  "shoot you", "shoot them")),
    ("violence/graphic", ("gore", "dismember", "mutilate", "behead")),
    ("harassment", ("idiot", "moron", "worthless loser")),
    ("harassment/threatening", ("i will kill you", "i'll kill you", "i will hurt you", "watch your back")),
    ("hate", ("subhuman", "vermin people", "inferior race")),
    ("hate/threatening", ("exterminate them", "ethnic cleansing")),
    ("self-harm", ("self-harm", "suicide", "hurt myself")),
    ("self-harm/intent", ("kill myself", "want to die", "end my life")),
    ("self-harm/instructions", ("how to kill myself", "ways to commit suicide")),
    ("sexual", ("porn", "explicit sex", "nsfw")),
    ("illicit", ("cook meth", "make meth", "launder money")),
    ("illicit/violent", ("make a bomb", "build a bomb", "pipe bomb")),
)


# -- tokens ----------------------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _message_tokens(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    tokens = 4 + count_tokens(_text_of(message.get("content")))
    # An agent loop's earlier tool calls are prompt text on the next turn.
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            tokens += count_tokens(str(fn.get("name", ""))) + count_tokens(str(fn.get("arguments", "")))
    return tokens


def _tools_tokens(tools: Any) -> int:
    # Tool definitions reach the model as text: a little framing plus their JSON.
    if not isinstance(tools, list):
        return 0
    return sum(8 + count_tokens(orjson.dumps(t.get("function", t)).decode()) for t in tools if isinstance(t, dict))


def prompt_tokens(payload: dict[str, Any]) -> int:
    """The prompt tokens of a chat completion body: like OpenAI's accounting, a few tokens of framing per message
    and three to prime the reply, plus the offered tools and earlier tool calls."""
    return sum(_message_tokens(m) for m in payload.get("messages") or ()) + 3 + _tools_tokens(payload.get("tools"))


def count_message_tokens(body: dict[str, Any]) -> int:
    """The input tokens of an Anthropic Messages body (system, messages, tools): what the mock reports as
    ``prompt_tokens`` for the same conversation, which reaches it translated to chat completions."""
    if not isinstance(body, dict):
        return 0
    # A token count request has no max_tokens (and may lack a model); the translation wants both.
    translated = openai_request({"model": "mock", **body, "max_tokens": 1})
    if isinstance(translated, dict):
        return prompt_tokens(translated)
    # Not translatable (the real request would be refused): still an estimate rather than an error.
    rough = [body.get("system"), body.get("messages"), body.get("tools")]
    return 3 + count_tokens(orjson.dumps(rough, default=str).decode())


def _last_user_text(payload: dict[str, Any]) -> str:
    messages = payload.get("messages") or ()
    return next((_text_of(m.get("content")) for m in reversed(messages)
                 if isinstance(m, dict) and m.get("role") == "user"), "")


def _cut(pieces: list[str], limit: int | None) -> tuple[list[str], str]:
    """The pieces that fit in ``limit`` tokens, and the finish reason."""
    if limit is not None:
        out: list[str] = []
        used = 0
        for piece in pieces:
            used += count_tokens(piece)
            if used > limit:
                return out or [pieces[0][: limit * 4]], "length"
            out.append(piece)
    return pieces, "stop"


def _echo(prefix: str, text: str) -> list[str]:
    words = (prefix + " " + (text or "your request")).split()
    words = (words * (_DEFAULT_REPLY_WORDS // len(words) + 1))[: max(len(words), 8)]
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _variant_prefix(prefixes: tuple[str, ...], variant: int) -> str:
    return prefixes[variant] if variant < len(prefixes) else f"Mock answer #{variant + 1} to:"


def reply_words(payload: dict[str, Any], limit: int | None) -> tuple[list[str], str]:
    """The words of the answer (an echo of the last user message) and the finish reason."""
    return _cut(_echo(_ECHO_PREFIXES[0], _last_user_text(payload)), limit)


def split_pieces(text: str) -> list[str]:
    """Word-like pieces (leading whitespace kept, at most 12 visible characters) that join back to ``text``."""
    return _PIECE.findall(text)


def text_tokens(text: str) -> int:
    """The tokens of generated text as the mock counts (and streams, and gives logprobs for) them: per piece."""
    return sum(count_tokens(p) for p in split_pieces(text))


def _stops(payload: dict[str, Any]) -> list[str]:
    stop = payload.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    return [s for s in stops if isinstance(s, str) and s]


def _stop_at(pieces: list[str], stops: Sequence[str]) -> tuple[list[str], bool]:
    """The pieces before the first stop sequence (excluded, as OpenAI does), and whether one was hit."""
    text = "".join(pieces)
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if not hits:
        return pieces, False
    end = min(hits)
    out: list[str] = []
    at = 0
    for piece in pieces:
        if at + len(piece) >= end:
            if end > at:
                out.append(piece[: end - at])
            break
        out.append(piece)
        at += len(piece)
    return out, True


def _finish(pieces: list[str], limit: int | None, stops: Sequence[str]) -> tuple[list[str], str]:
    # A stop sequence ends generation where it starts; the limit applies to what is left.
    pieces, _ = _stop_at(pieces, stops)
    if not pieces:
        return [""], "stop"
    return _cut(pieces, limit)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _unit(*parts: str) -> float:
    """A number in [0, 1) derived from the parts."""
    return int(_digest(*parts)[:13], 16) / float(1 << 52)


def _positive_int(value: Any, default: int, cap: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return min(value, cap)
    return default


# -- prompt hints ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hints:
    """What the generated values borrow from the prompt."""

    text: str  # the last user message
    places: tuple[str, ...]  # place-looking phrases in it, in order
    answer: str | None = None  # the sentence answer-like string fields carry (structured output)

    def place(self, variant: int) -> str:
        return self.places[variant % len(self.places)] if self.places else "San Francisco"


def _places(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for match in _PLACE_LIST.finditer(text):
        for phrase in re.split(_SEPARATOR, match.group(1)):
            phrase = re.sub(r"(?:'s|\u2019s|[.'\u2019-])+$", "", phrase.strip())
            if phrase and phrase.split()[0].lower() not in _NOT_PLACES:
                found.append(phrase)
    if not found:
        # "weather in paris": lower-case places after in/at, when nothing capitalized looks like one.
        found = [m.group(1).title() for m in _LOWER_PLACE.finditer(text) if m.group(1) not in _NOT_PLACES
                 and m.group(1) not in _STOPWORDS]
    return tuple(dict.fromkeys(found))[:_MAX_PARALLEL_CALLS]


def _hints(payload: dict[str, Any]) -> _Hints:
    text = _last_user_text(payload)
    return _Hints(text=text, places=_places(text))


def _name_words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _near_value(text: str, words: Iterable[str]) -> str | None:
    """The word following a property's name in the prompt ("order 12345", "named Alice", "id: x-1")."""
    for word in words:
        if len(word) < 2 or word in _STOPWORDS:
            continue
        pattern = (rf"\b{re.escape(word)}(?:s|es|d|ed)?\b(?:\s+(?:is|was|of|named|called|number|id))?"
                   r"\s*[:=#]?\s*[\"']?([\w.@/+-]+)")
        for match in re.finditer(pattern, text, re.IGNORECASE):
            value = match.group(1).strip(".")
            if value and value.lower() not in _STOPWORDS:
                return value
    return None


def _near_number(text: str, words: Iterable[str]) -> float | None:
    """A number next to a property's name in the prompt ("5 days", "limit 10", "max_results=3")."""
    for word in words:
        if len(word) < 2 or word in _STOPWORDS:
            continue
        w = re.escape(word)
        for pattern in (rf"\b{w}\w*\s*(?:is|of|=|:|to)?\s*{_NUMBER}", rf"{_NUMBER}\s*{w}"):
            match = re.search(pattern, text, re.IGNORECASE)
            if match:
                return float(match.group(1))
    return None


# -- values from JSON schemas --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ctx:
    root: Mapping[str, Any]
    hints: _Hints


def schema_instance(schema: Any, prompt: str = "", variant: int = 0) -> Any:
    """A value valid against a JSON schema (the subset tools and structured output use: types, enum, const,
    anyOf/oneOf/allOf, local $ref, properties/required/additionalProperties, items/prefixItems, the usual
    bounds and formats), with strings taken from ``prompt`` where a property's name fits."""
    return _instance(schema, _Hints(prompt, _places(prompt)), variant)


def _instance(schema: Any, hints: _Hints, variant: int) -> Any:
    root = schema if isinstance(schema, Mapping) else {}
    return _value(schema, _Ctx(root, hints), "", 0, variant)


def _pointer(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        return {}  # remote references: nothing to follow offline
    node: Any = root
    for part in (p for p in ref[1:].split("/") if p):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _merge(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Both schemas' keywords (``first`` wins a conflict), properties and required lists united."""
    out = {**second, **first}
    if "properties" in first or "properties" in second:
        out["properties"] = {**(second.get("properties") or {}), **(first.get("properties") or {})}
    if "required" in first or "required" in second:
        out["required"] = list(dict.fromkeys([*(second.get("required") or []), *(first.get("required") or [])]))
    return out


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    for _ in range(_MAX_DEPTH):
        ref = out.pop("$ref", None)
        if not isinstance(ref, str):
            break
        out = _merge(out, _pointer(root, ref))  # sibling keywords (a description, a default) stay
    subs = out.pop("allOf", None)
    for sub in subs if isinstance(subs, list) else ():
        if isinstance(sub, Mapping):
            out = _merge(out, _resolve(sub, root))
    return out


def _type_of(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list):
        kinds = [k for k in kind if isinstance(k, str)]
        return next((k for k in kinds if k != "null"), kinds[0] if kinds else None)
    if any(k in schema for k in ("properties", "additionalProperties", "required", "minProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "array"
    if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return None


def _minimal(kind: str | None) -> Any:
    return {"object": {}, "array": [], "string": "", "integer": 0, "number": 0, "boolean": False}.get(kind or "")


def _value(schema: Any, ctx: _Ctx, name: str, depth: int, variant: int) -> Any:
    if not isinstance(schema, Mapping):  # true / {} accept anything; false accepts nothing, so any value will do
        return _string({}, ctx, name, variant)
    schema = _resolve(schema, ctx.root)
    if depth > _MAX_DEPTH:
        return _minimal(_type_of(schema))
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return _pick_enum(enum, ctx.hints, variant)
    for key in ("anyOf", "oneOf"):
        options = [_resolve(o, ctx.root) for o in schema.get(key) or () if isinstance(o, Mapping)]
        if options:
            # The first branch that is not null: what a model fills in for Optional[X].
            chosen = next((o for o in options if _type_of(o) != "null"), options[0])
            rest = {k: v for k, v in schema.items() if k != key}
            return _value(_merge(chosen, rest), ctx, name, depth + 1, variant)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, ctx, depth, variant)
    if kind == "array":
        return _array(schema, ctx, name, depth, variant)
    if kind in ("integer", "number"):
        return _number(schema, ctx.hints, _name_words(name), variant, integer=kind == "integer")
    if kind == "boolean":
        return _boolean(ctx.hints, _name_words(name))
    if kind == "null":
        return None
    return _string(schema, ctx, name, variant)


def _pick_enum(enum: list[Any], hints: _Hints, variant: int) -> Any:
    lower = hints.text.lower()
    mentioned = [v for v in enum if isinstance(v, str) and v and re.search(rf"\b{re.escape(v.lower())}\b", lower)]
    return mentioned[0] if mentioned else enum[variant % len(enum)]


def _hinted(name: str, schema: Any, ctx: _Ctx) -> bool:
    """Whether the prompt has something for an optional property (so a model would fill it in)."""
    hints = ctx.hints
    schema = _resolve(schema, ctx.root) if isinstance(schema, Mapping) else {}
    words = _name_words(name)
    if _PLACE_WORDS.intersection(words) and hints.places:
        return True
    enum = schema.get("enum")
    if isinstance(enum, list) and any(isinstance(v, str) and v.lower() in hints.text.lower() for v in enum):
        return True
    if _type_of(schema) in ("integer", "number"):
        return _near_number(hints.text, words) is not None
    return _near_value(hints.text, words) is not None


def _object(schema: Mapping[str, Any], ctx: _Ctx, depth: int, variant: int) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = [r for r in schema.get("required") or () if isinstance(r, str)]
    # Loose hand-written tool schemas often list no "required": fill everything, as a model would.
    loose = "required" not in schema
    optional = [n for n in props if n not in required and depth < _OPTIONAL_DEPTH
                and (loose or _hinted(n, props[n], ctx))]
    most = schema.get("maxProperties")
    if isinstance(most, int) and not isinstance(most, bool):
        optional = optional[: max(0, most - len(required))]
    names = [n for n in props if n in required or n in optional] + [r for r in required if r not in props]
    extra = schema.get("additionalProperties")
    extra_schema = extra if isinstance(extra, Mapping) else {}
    out = {n: _value(props.get(n, extra_schema), ctx, n, depth + 1, variant) for n in names}
    fewest = schema.get("minProperties")
    if isinstance(fewest, int) and not isinstance(fewest, bool):
        for n in props:
            if len(out) >= fewest:
                break
            out.setdefault(n, _value(props[n], ctx, n, depth + 1, variant))
        i = 1
        while len(out) < fewest and extra is not False:
            out.setdefault(f"key{i}", _value(extra_schema, ctx, f"key{i}", depth + 1, variant))
            i += 1
    return out


def _array(schema: Mapping[str, Any], ctx: _Ctx, name: str, depth: int, variant: int) -> list[Any]:
    items = schema.get("items")
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    if isinstance(items, list):  # draft-07 tuples
        prefix, items = items, schema.get("additionalItems")
    fewest = schema.get("minItems")
    fewest = fewest if isinstance(fewest, int) and not isinstance(fewest, bool) else 0
    count = max(fewest, len(prefix), 0 if items is False else 1)
    if _PLACE_WORDS.intersection(_name_words(name)):
        count = max(count, len(ctx.hints.places))  # "cities" from "Paris and London": both
    most = schema.get("maxItems")
    if isinstance(most, int) and not isinstance(most, bool):
        count = min(count, most)
    # Each item its own variant, so unique items stay unique.
    return [_value(prefix[i] if i < len(prefix) else items if items is not None else {}, ctx, name, depth + 1,
                   variant + i) for i in range(count)]


def _bound(schema: Mapping[str, Any], key: str) -> float | None:
    value = schema.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(schema: Mapping[str, Any], hints: _Hints, words: list[str], variant: int, integer: bool) -> int | float:
    found = _near_number(hints.text, words)
    value = found if found is not None else float(1 + variant)
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    xlow, xhigh = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    ceiling = min([v for v in (high, xhigh) if v is not None], default=math.inf)
    floor = max([v for v in (low, xlow) if v is not None], default=-math.inf)
    if low is not None and value < low:
        value = low
    if xlow is not None and value <= xlow:
        value = xlow + 1 if xlow + 1 < ceiling else (xlow + ceiling) / 2
    if high is not None and value > high:
        value = high
    if xhigh is not None and value >= xhigh:
        value = xhigh - 1 if xhigh - 1 > floor else (floor + xhigh) / 2
    step = _bound(schema, "multipleOf")
    if step is not None and step > 0:
        k = math.ceil(value / step - 1e-9)
        value = round((k if k * step <= ceiling else k - 1) * step, 12)
    if integer:
        whole = math.ceil(value)
        fits = whole <= ceiling and not (xhigh is not None and whole >= xhigh)
        return int(whole if fits else math.floor(value))
    return value


def _boolean(hints: _Hints, words: list[str]) -> bool:
    specific = [w for w in words if len(w) > 2 and w not in _GENERIC_VERBS and w not in ("is", "has", "include")]
    lower = hints.text.lower()
    return bool(specific) and any(re.search(rf"\b{re.escape(w)}", lower) for w in specific)


def _formatted(fmt: str, ctx: _Ctx, name: str, variant: int) -> str | None:
    date = _ISO_DATE.search(ctx.hints.text)
    day = date.group(0) if date else f"2024-01-{1 + variant % 28:02d}"
    if fmt == "uuid":
        h = _digest("uuid", ctx.hints.text, name, str(variant))
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    return {"date": day, "date-time": f"{day}T12:00:00Z", "time": "12:00:00", "email": "user@example.com",
            "idn-email": "user@example.com", "uri": "https://example.com/", "url": "https://example.com/",
            "iri": "https://example.com/", "uri-reference": "https://example.com/", "hostname": "example.com",
            "idn-hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "duration": "PT1H"}.get(fmt)


def _from_prompt(schema: Mapping[str, Any], ctx: _Ctx, name: str, variant: int) -> str:
    hints = ctx.hints
    words = _name_words(name)
    suffix = f" {variant + 1}" if variant else ""
    if _PLACE_WORDS.intersection(words):
        return hints.place(variant)
    if _QUERY_WORDS.intersection(words):
        return (hints.text.strip() or "example") + suffix
    if _ANSWER_WORDS.intersection(words):
        return (hints.answer or hints.text.strip() or "example") + suffix
    about = f"{schema.get('title', '')} {schema.get('description', '')}".lower()
    if _PLACE_WORDS.intersection(_WORD.findall(about)):
        return hints.place(variant)
    near = _near_value(hints.text, words)
    if near is not None:
        return near + suffix
    return ("example " + " ".join(words) if words else "example") + suffix


def _string(schema: Mapping[str, Any], ctx: _Ctx, name: str, variant: int) -> str:
    fmt = schema.get("format")
    value = (_formatted(fmt, ctx, name, variant) if isinstance(fmt, str) else None) or _from_prompt(
        schema, ctx, name, variant)
    lo, hi = schema.get("minLength"), schema.get("maxLength")
    lo = lo if isinstance(lo, int) and not isinstance(lo, bool) else 0
    hi = hi if isinstance(hi, int) and not isinstance(hi, bool) else None
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        value = _matching(pattern, [value, value.lower(), value.upper(), "example", "A1", "a", "0", "12345"], value)
    while len(value) < lo:
        value = f"{value} {value or 'x'}"
    return value[:hi] if hi is not None else value


def _matching(pattern: str, candidates: list[str], fallback: str) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error:  # ECMA syntax Python does not know: keep the value
        return fallback
    return next((c for c in candidates if compiled.search(c)), fallback)


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
        allowed = choice.get("allowed_tools") or {}
        names = {t.get("function", {}).get("name") or t.get("name") for t in allowed.get("tools") or ()
                 if isinstance(t, dict)}
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


# -- legacy completions ---------------------------------------------------------------------------------------------


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value)


def _prompts(prompt: Any) -> list[tuple[str, int]]:
    """(text, tokens) per prompt: a string, strings, token ids or lists of token ids (texts unknown: empty)."""
    if isinstance(prompt, str):
        return [(prompt, count_tokens(prompt))]
    if _is_ids(prompt):
        return [("", len(prompt))]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return [(p, count_tokens(p)) for p in prompt]
    if isinstance(prompt, list) and prompt and all(_is_ids(p) for p in prompt):
        return [("", len(p)) for p in prompt]
    raise ValueError("prompt: must be a string, a list of strings, a list of token ids or a list of such lists")


@dataclass(frozen=True, slots=True)
class _TextChoice:
    echo: str  # the prompt, repeated first when ``echo`` is asked for
    pieces: tuple[str, ...]
    finish: str
    logprobs: tuple[tuple[dict[str, Any], ...], ...] | None


def _text_choices(payload: dict[str, Any], limit: int | None) -> tuple[list[_TextChoice], int]:
    prompts = _prompts(payload.get("prompt"))
    n = _positive_int(payload.get("n"), 1, _MAX_N)
    wanted = payload.get("logprobs")
    top = min(wanted, _MAX_LEGACY_LOGPROBS) if isinstance(wanted, int) and not isinstance(wanted, bool) else None
    limit = _LEGACY_DEFAULT_MAX_TOKENS if limit is None else limit
    echo = payload.get("echo") is True
    choices: list[_TextChoice] = []
    for p, (text, _) in enumerate(prompts):
        for j in range(n):
            # A continuation of the prompt, so the first word has its space.
            words = _echo(_variant_prefix(_COMPLETION_PREFIXES, j), text or "your prompt")
            pieces, finish = _finish(split_pieces(" " + "".join(words)), limit, _stops(payload))
            salt = _digest(text, str(p), str(j))
            logprobs = None if top is None else tuple(
                tuple(_piece_logprobs(piece, top, salt, k)) for k, piece in enumerate(pieces))
            choices.append(_TextChoice(text if echo else "", tuple(pieces), finish, logprobs))
    return choices, sum(tokens for _, tokens in prompts)


def _legacy_logprobs(entries: Iterable[dict[str, Any]], offset: int) -> dict[str, Any]:
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for entry in entries:
        tokens.append(entry["token"])
        token_logprobs.append(entry["logprob"])
        tops.append({t["token"]: t["logprob"] for t in entry["top_logprobs"]})
        offsets.append(offset)
        offset += len(entry["token"])
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}


def _text_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def text_completion(payload: dict[str, Any], model: str, ident: str, created: int,
                    max_tokens: int | None) -> dict[str, Any]:
    """The legacy ``text_completion`` answer: one choice per prompt and ``n`` (index prompt * n + j); the
    output limit defaults to 16 tokens as on OpenAI. Raises ``ValueError`` for a malformed ``prompt``."""
    choices, prompt = _text_choices(payload, max_tokens)
    wire = []
    for i, c in enumerate(choices):
        logprobs = None if c.logprobs is None else _legacy_logprobs((e for p in c.logprobs for e in p), len(c.echo))
        wire.append({"text": c.echo + "".join(c.pieces), "index": i, "logprobs": logprobs, "finish_reason": c.finish})
    completion = sum(count_tokens(p) for c in choices for p in c.pieces)
    return {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": wire,
            "usage": _text_usage(prompt, completion), "system_fingerprint": None}


def _text_events(choice: _TextChoice) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    out: list[tuple[str, dict[str, Any] | None, str | None]] = [(choice.echo, None, None)] if choice.echo else []
    offset = len(choice.echo)
    for k, piece in enumerate(choice.pieces):
        out.append((piece, None if choice.logprobs is None else _legacy_logprobs(choice.logprobs[k], offset), None))
        offset += len(piece)
    out.append(("", None, choice.finish))
    return out


def text_completion_chunks(payload: dict[str, Any], model: str, ident: str, created: int,
                           max_tokens: int | None) -> list[dict[str, Any]]:
    """``text_completion`` as a stream: ``text_completion`` objects with one choice each (``finish_reason``
    null until the choice's last, empty-text chunk), then a usage-only chunk (``choices: []``)."""
    choices, prompt = _text_choices(payload, max_tokens)
    base = {"id": ident, "object": "text_completion", "created": created, "model": model, "system_fingerprint": None}
    chunks: list[dict[str, Any]] = []
    for step in zip_longest(*(_text_events(c) for c in choices)):
        for index, event in enumerate(step):
            if event is not None:
                text, logprobs, finish = event
                chunks.append({**base, "choices": [
                    {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}]})
    completion = sum(count_tokens(p) for c in choices for p in c.pieces)
    chunks.append({**base, "choices": [], "usage": _text_usage(prompt, completion)})
    return chunks


# -- embeddings -----------------------------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[tuple[list[str], str, int]]:
    """(features, identity, tokens) per input; the features are what similar inputs share."""
    def of_text(text: str) -> tuple[list[str], str, int]:
        if not text:
            raise ValueError("input: must not be an empty string")
        return list(dict.fromkeys(_WORD.findall(text.lower())))[:64], text, count_tokens(text)

    def of_ids(ids: list[int]) -> tuple[list[str], str, int]:
        return list(dict.fromkeys(f"#{i}" for i in ids))[:64], "ids:" + ",".join(map(str, ids)), len(ids)

    if isinstance(value, str):
        return [of_text(value)]
    if _is_ids(value):
        return [of_ids(value)]
    if isinstance(value, list) and value and len(value) <= 2048:
        if all(isinstance(v, str) for v in value):
            return [of_text(v) for v in value]
        if all(_is_ids(v) for v in value):
            return [of_ids(v) for v in value]
    raise ValueError("input: must be a non-empty string, a list of strings, a list of token ids "
                     "or a list of such lists (at most 2048 inputs)")


def _vector(features: list[str], identity: str, size: int) -> list[float]:
    # A sum of pseudo-random byte vectors, one per distinct word plus one for the whole input: the same input
    # always gets the same vector, and inputs sharing words point in similar directions.
    acc = [0] * size
    keys = [*features, "\x00" + identity]
    for key in keys:
        acc = list(map(operator.add, acc, hashlib.shake_256(key.encode()).digest(size)))
    center = 127.5 * len(keys)
    centered = [a - center for a in acc]
    norm = math.sqrt(sum(x * x for x in centered)) or 1.0
    # float32, as the API serves them; nine significant digits name each float32 exactly.
    packed = struct.unpack(f"<{size}f", struct.pack(f"<{size}f", *(x / norm for x in centered)))
    return [float(f"{x:.9g}") for x in packed]


def embeddings(payload: dict[str, Any], model: str, dimensions: int) -> dict[str, Any]:
    """The ``/v1/embeddings`` answer: a unit vector per input of ``payload["dimensions"]`` (at most
    ``dimensions``, the model's size, which is the default), as floats or ``base64`` little-endian float32.
    Raises ``ValueError`` for a malformed ``input``, ``dimensions`` or ``encoding_format``."""
    inputs = _embedding_inputs(payload.get("input"))
    size = payload.get("dimensions", dimensions)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= dimensions:
        raise ValueError(f"dimensions: must be an integer from 1 to {dimensions}")
    fmt = payload.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ValueError("encoding_format: must be 'float' or 'base64'")
    data = []
    for i, (features, identity, _) in enumerate(inputs):
        vector = _vector(features, identity, size)
        encoded: Any = vector if fmt == "float" else base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(t for _, _, t in inputs)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


# -- moderations ----------------------------------------------------------------------------------------------------


def _moderation_inputs(value: Any) -> list[tuple[str, bool]]:
    """(text, has an image) per input; a list of content parts is one multi-modal input."""
    if isinstance(value, str):
        return [(value, False)]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [(v, False) for v in value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        text = " ".join(v["text"] for v in value if v.get("type") == "text" and isinstance(v.get("text"), str))
        return [(text, any(v.get("type") == "image_url" for v in value))]
    raise ValueError("input: must be a string, a list of strings or a list of text and image_url parts")


def _moderate(text: str, image: bool) -> dict[str, Any]:
    lower = text.lower()
    flagged = {c for c, markers in _MARKERS if any(re.search(rf"\b{re.escape(m)}\b", lower) for m in markers)}
    flagged |= {c.split("/")[0] for c in flagged}
    scores = {c: round(0.9 + 0.09 * _unit("flag", c, text), 6) if c in flagged
              else round(1e-6 + 1e-3 * _unit("score", c, text) ** 3, 8) for c in _MODERATION_CATEGORIES}
    kinds = {c: ["text", "image"] if image and c in _IMAGE_CATEGORIES else ["text"] for c in _MODERATION_CATEGORIES}
    return {"flagged": bool(flagged), "categories": {c: c in flagged for c in _MODERATION_CATEGORIES},
            "category_scores": scores, "category_applied_input_types": kinds}


def moderation(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """The ``/v1/moderations`` answer: one result per input, flagged only for the marker phrases above.
    Raises ``ValueError`` for a malformed ``input``."""
    inputs = _moderation_inputs(payload.get("input"))
    ident = "modr-" + _digest(orjson.dumps(payload.get("input")).decode())[:24]
    return {"id": ident, "model": model, "results": [_moderate(text, image) for text, image in inputs]}
