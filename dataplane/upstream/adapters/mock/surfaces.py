"""The mock model beyond chat: legacy completions, embeddings and moderations. Pure and deterministic
(the contract of every mock answer is in ``model``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import operator
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import orjson

from dataplane.upstream.adapters.mock.model import _piece_logprobs
from dataplane.upstream.adapters.mock.text import (
    _COMPLETION_PREFIXES,
    _IMAGE_CATEGORIES,
    _LEGACY_DEFAULT_MAX_TOKENS,
    _MARKERS,
    _MAX_LEGACY_LOGPROBS,
    _MAX_N,
    _MODERATION_CATEGORIES,
    _WORD,
    _digest,
    _echo,
    _finish,
    _positive_int,
    _stops,
    _unit,
    _variant_prefix,
    count_tokens,
    split_pieces,
)

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
