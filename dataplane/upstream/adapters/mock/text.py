"""The mock model's text: token counting, the pieces of an answer, hints taken from the prompt, and
deterministic draws. Pure; shared by the chat answers (``model``), the schema generator
(``schema``) and the other surfaces (``surfaces``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
