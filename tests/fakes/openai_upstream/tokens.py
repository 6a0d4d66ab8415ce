"""The fake's deterministic counts and shapes of inputs: ``text_tokens`` (one per 4 characters),
``response_input_tokens`` of a Responses context, ``word_pieces`` (the reply as streamed, a token a word), and
``_text_or_ids``, an ``input``/``prompt`` of texts or token ids."""

from __future__ import annotations

from typing import Any


def text_tokens(text: str) -> int:
    """The fake's token count of a text: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


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
