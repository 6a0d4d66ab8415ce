"""Validation of a chat completion body: the fields that matter, and the keys nobody may send.

Pure: ``validate_chat(payload, body_len)`` returns a ``ChatRequest`` or an ``ApiError`` (400, with ``param``).
Keys that would let a client choose where a request goes or with which credential (``api_base``, ``api_key``,
``extra_headers``…) are refused at any depth, because a proxy that honours them anywhere is an open relay. Only
names of JSON-schema properties (tool parameters, response formats) are exempt: there they are user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.errors import ApiError, invalid

BANNED_KEYS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "api_type", "azure_endpoint", "azure_deployment",
    "azure_ad_token", "azure_ad_token_provider", "organization", "project_id", "custom_llm_provider",
    "extra_headers", "extra_query", "extra_body", "headers", "default_headers", "proxy", "proxies",
    "http_client", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "aws_region_name", "aws_profile_name", "vertex_project", "vertex_location", "vertex_credentials",
    "deployment_id", "litellm_params", "user_api_key",
})
# Dict values under these keys map user-chosen names to schemas; their keys are names, not settings.
_SCHEMA_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_DEPTH = 64
_CONTAINERS = (dict, list)  # a tuple: ``dict | list`` would build a union object at every use


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat completion body. ``payload`` is the client's JSON object; never mutate it."""

    payload: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool  # the client asked for the final usage chunk
    max_tokens: int | None
    # A cheap estimate for ranking (about 4 bytes per token); the body length bounds text bytes from above.
    estimated_prompt_tokens: int
    needs: frozenset[str]  # capabilities the request uses: tools | vision | json_mode


# A path into the payload as a chain of (parent, key or index) links: built as the walk descends, joined into a
# dotted string only for the one path that is reported.
_Path = tuple["_Path | None", "str | int"]


def find_banned_key(value: Any) -> str | None:
    """The dotted path of the first banned key anywhere in ``value``, else None. Iterative: no recursion limit."""
    stack: list[tuple[Any, _Path | None, bool, int]] = [(value, None, False, 0)]
    while stack:
        node, path, names_only, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return _dotted(path) or "body"
        if isinstance(node, dict):
            for k, v in node.items():
                # Keys are almost always lower case already: lower() only for the others.
                if not names_only and isinstance(k, str) and (
                        k in BANNED_KEYS or (not k.islower() and k.lower() in BANNED_KEYS)):
                    return _dotted((path, k))
                if isinstance(v, _CONTAINERS):
                    stack.append((v, (path, k), not names_only and k in _SCHEMA_NAME_MAPS, depth + 1))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, _CONTAINERS):
                    stack.append((v, (path, i), False, depth + 1))
    return None


def _dotted(path: _Path | None) -> str:
    steps: list[str | int] = []
    while path is not None:
        path, step = path
        steps.append(step)
    text = ""
    for step in reversed(steps):
        text = f"{text}[{step}]" if isinstance(step, int) else f"{text}.{step}" if text else step
    return text


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_messages(messages: Any) -> ApiError | bool:
    """An error, or whether any message carries an image (the vision capability)."""
    if not isinstance(messages, list) or not messages:
        return invalid("'messages' must be a non-empty array of message objects", "messages")
    vision = False
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            return invalid(f"'{where}' must be an object", where)
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            return invalid(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}", f"{where}.role")
        content = m.get("content")
        if content is None:
            if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
                continue
            return invalid(f"'{where}.content' is required", f"{where}.content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return invalid(f"'{where}.content' must be a string or an array of parts", f"{where}.content")
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                return invalid(f"'{where}.content[{j}]' must be an object with a 'type'", f"{where}.content[{j}]")
            if part["type"] in ("image_url", "input_image"):
                vision = True
    return vision


def _check_fields(p: dict[str, Any]) -> ApiError | None:
    for name in ("max_tokens", "max_completion_tokens", "n"):
        v = p.get(name)
        if v is not None and (not _is_int(v) or v < 1):
            return invalid(f"'{name}' must be a positive integer", name)
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("presence_penalty", -2, 2),
                            ("frequency_penalty", -2, 2)):
        v = p.get(name)
        if v is not None and (not _is_number(v) or not low <= v <= high):
            return invalid(f"'{name}' must be a number between {low} and {high}", name)
    stop = p.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        return invalid("'stop' must be a string or an array of strings", "stop")
    so = p.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        return invalid("'stream_options' must be an object with a boolean 'include_usage'", "stream_options")
    for name in ("tools", "functions"):
        v = p.get(name)
        if v is not None and (not isinstance(v, list) or not all(isinstance(t, dict) for t in v)):
            return invalid(f"'{name}' must be an array of objects", name)
    rf = p.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or not isinstance(rf.get("type"), str)):
        return invalid("'response_format' must be an object with a 'type'", "response_format")
    user = p.get("user")
    if user is not None and not isinstance(user, str):
        return invalid("'user' must be a string", "user")
    return None


def validate_chat(payload: Any, body_len: int) -> ChatRequest | ApiError:
    if not isinstance(payload, dict):
        return invalid("the request body must be a JSON object")
    banned = find_banned_key(payload)
    if banned is not None:
        return invalid(f"'{banned}' may not be set by clients: upstreams and credentials come from policy",
                       banned, "forbidden_parameter")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return invalid("'model' must be a non-empty string", "model")
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        return invalid("'stream' must be a boolean", "stream")
    vision = _check_messages(payload.get("messages"))
    if isinstance(vision, ApiError):
        return vision
    error = _check_fields(payload)
    if error is not None:
        return error
    so = payload.get("stream_options")
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
    needs = set()
    if payload.get("tools") or payload.get("functions"):
        needs.add("tools")
    if vision:
        needs.add("vision")
    rf = payload.get("response_format")
    if rf is not None and rf.get("type") in ("json_object", "json_schema"):
        needs.add("json_mode")
    return ChatRequest(
        payload=payload, model=model, stream=stream,
        include_usage=stream and isinstance(so, dict) and so.get("include_usage") is True,
        max_tokens=max_tokens, estimated_prompt_tokens=body_len // 4 + 1, needs=frozenset(needs),
    )
