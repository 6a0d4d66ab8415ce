"""The fake's deterministic numbers: token counts (``text_tokens``, ``call_tokens``, ``prompt_tokens`` and
``prompt_token_details``), Vertex's billable characters and the embeddings (``embedding_values``)."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

import orjson

from tests.fakes.google_upstream.wire import _camel_keys

MEDIA_TOKENS = 258
EMBEDDING_INPUT_TOKENS = 2048


def text_tokens(text: str) -> int:
    """The fake's token count of a text: one token per 4 characters, rounded up (0 for the empty text)."""
    return (len(text) + 3) // 4


def call_tokens(name: str, arguments: Any) -> int:
    """The fake's token count of a function call (or response): ``text_tokens`` of the name followed by the
    arguments as JSON with sorted keys and no spaces."""
    return text_tokens(name + _canonical(arguments))


def _modality(mime: str) -> str:
    if mime == "application/pdf":
        return "DOCUMENT"
    return {"image": "IMAGE", "audio": "AUDIO", "video": "VIDEO"}.get(mime.split("/", 1)[0], "TEXT")


def _part_tokens(part: dict[str, Any]) -> tuple[str, int]:
    def value(key: str) -> dict[str, Any]:
        got = part.get(key)
        return got if isinstance(got, dict) else {}

    if isinstance(part.get("text"), str):
        return "TEXT", text_tokens(part["text"])
    for key in ("inlineData", "fileData"):
        if key in part:
            return _modality(str(value(key).get("mimeType", ""))), MEDIA_TOKENS
    for key, payload in (("functionCall", "args"), ("functionResponse", "response")):
        if key in part:
            call = value(key)
            return "TEXT", call_tokens(str(call.get("name", "")), call.get(payload, {}))
    if "executableCode" in part:
        return "TEXT", text_tokens(str(value("executableCode").get("code", "")))
    if "codeExecutionResult" in part:
        return "TEXT", text_tokens(str(value("codeExecutionResult").get("output", "")))
    return "TEXT", 0


def _canonical(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _contents_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    system = body.get("systemInstruction")
    return contents + ([system] if isinstance(system, dict) else [])


def prompt_token_details(body: dict[str, Any]) -> dict[str, int]:
    """Per modality (TEXT, IMAGE, AUDIO, VIDEO, DOCUMENT), the tokens of a GenerateContentRequest (or countTokens)
    body: ``text_tokens`` of each text, function call (name and JSON arguments) and function response, 258 per
    inline or file media part, over ``contents`` and ``systemInstruction``; plus ``text_tokens`` of the JSON of
    each tool's ``functionDeclarations``, as TEXT. Keys may be camelCase or snake_case."""
    body = _camel_keys(body)
    details: dict[str, int] = {}
    for content in _contents_of(body):
        for part in content.get("parts") or []:
            if isinstance(part, dict):
                modality, count = _part_tokens(part)
                details[modality] = details.get(modality, 0) + count
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("functionDeclarations"):
            details["TEXT"] = details.get("TEXT", 0) + text_tokens(_canonical(tool["functionDeclarations"]))
    return {k: v for k, v in details.items() if v} or {"TEXT": 0}


def prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's ``promptTokenCount`` of a request body (without cached content): the sum of
    ``prompt_token_details``. countTokens answers the same number."""
    return sum(prompt_token_details(body).values())


def billable_characters(body: dict[str, Any]) -> int:
    """Vertex's ``totalBillableCharacters``: the characters of every text part, whitespace excluded."""
    body = _camel_keys(body)
    return sum(_billable(str(part["text"])) for content in _contents_of(body) for part in content.get("parts") or []
               if isinstance(part, dict) and isinstance(part.get("text"), str))


def _billable(text: str) -> int:
    return sum(1 for ch in text if not ch.isspace())


def embedding_values(text: str, dimensions: int, model_dimensions: int = 3072, task_type: str = "") -> list[float]:
    """The fake's embedding of ``text`` (and ``task_type``): the first ``dimensions`` components of a unit vector
    of ``model_dimensions`` components that depends on them alone. Only the full vector is normalized, like
    gemini-embedding-001's truncated (Matryoshka) outputs."""
    seed = (task_type if task_type not in ("", "TASK_TYPE_UNSPECIFIED") else "").encode() + b"\0" + text.encode()
    raw = b"".join(hashlib.sha256(seed + i.to_bytes(4, "little")).digest() for i in range((model_dimensions + 7) // 8))
    units = [u / 2**31 - 1.0 for u in struct.unpack(f"<{model_dimensions}I", raw[: model_dimensions * 4])]
    norm = math.sqrt(sum(u * u for u in units)) or 1.0
    return [round(u / norm, 9) for u in units[:dimensions]]
