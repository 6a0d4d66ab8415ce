"""The fake's token counts, deterministic: ``text_tokens`` (one per 4 characters, rounded up) and what it makes of
Converse bodies (``converse_input_tokens``), Anthropic Messages bodies (``anthropic_input_tokens``) and answer
blocks (``output_tokens``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

IMAGE_TOKENS = 258


def text_tokens(text: str) -> int:
    """The fake's token count of a text: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _converse_block_tokens(block: Mapping[str, Any]) -> int:
    if "text" in block:
        return text_tokens(block["text"])
    if "image" in block:
        return IMAGE_TOKENS
    if "toolUse" in block:
        return text_tokens(block["toolUse"]["name"] + _json_text(block["toolUse"]["input"]))
    if "toolResult" in block:
        return sum(_converse_block_tokens(part) if "json" not in part else text_tokens(_json_text(part["json"]))
                   for part in block["toolResult"]["content"])
    if "cachePoint" in block:
        return 0
    return text_tokens(_json_text(block))


def converse_input_tokens(body: Mapping[str, Any]) -> int:
    """The fake's ``inputTokens`` of a Converse body: ``text_tokens`` of each system text, 3 per message plus each
    content block (text: its text; image: ``IMAGE_TOKENS``; toolUse: name + input JSON; toolResult: its texts and
    JSONs; cachePoint: 0; anything else: its JSON), plus ``text_tokens`` of each offered ``toolSpec``'s JSON."""
    system = sum(_converse_block_tokens(block) for block in body.get("system") or [])
    messages = sum(3 + sum(_converse_block_tokens(block) for block in m["content"]) for m in body.get("messages") or [])
    tools = sum(text_tokens(_json_text(t["toolSpec"])) for t in (body.get("toolConfig") or {}).get("tools") or []
                if "toolSpec" in t)
    return system + messages + tools


def _anthropic_block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return text_tokens(block.get("text", ""))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return text_tokens(block.get("name", "") + _json_text(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content", "")
        return sum(_anthropic_block_tokens(part) for part in (content if isinstance(content, list) else [content]))
    return text_tokens(_json_text(block))


def anthropic_input_tokens(body: Mapping[str, Any]) -> int:
    """The fake's ``input_tokens`` of an Anthropic Messages body on Bedrock, counted like ``converse_input_tokens``:
    the system text(s), 3 per message plus its blocks, and each tool's JSON."""
    system = body.get("system") or []
    count = sum(_anthropic_block_tokens(part) for part in (system if isinstance(system, list) else [system]))
    for m in body.get("messages") or []:
        content = m.get("content", "")
        count += 3 + sum(_anthropic_block_tokens(part) for part in (content if isinstance(content, list) else
                                                                      [content]))
    return count + sum(text_tokens(_json_text(tool)) for tool in body.get("tools") or [])


def output_tokens(content: Iterable[Mapping[str, Any]]) -> int:
    """The fake's output tokens of answer blocks (Converse or Anthropic): ``text_tokens`` of each text, and of each
    tool call's name + input JSON."""
    count = 0
    for block in content:
        if "text" in block:
            count += text_tokens(block["text"])
        call = block.get("toolUse") or (block if block.get("type") == "tool_use" else None)
        if call is not None:
            count += text_tokens(call["name"] + _json_text(call["input"]))
    return count
