"""Validation of request bodies, per surface: the fields that matter, and the keys nobody may send.

Pure: ``validate_chat(payload, body_len)`` (chat completions, the hub format) and ``validate_embeddings``,
``validate_completions``, ``validate_moderations`` return a ``HubRequest`` or an ``ApiError`` (400, with
``param``). The Responses and Anthropic Messages APIs are validated as chat once translated to it.
Keys that would let a client choose where a request goes or with which credential (``api_base``, ``api_key``,
``extra_headers``…) are refused at any depth, because a proxy that honours them anywhere is an open relay. Only
names of JSON-schema properties (tool parameters, response formats) are exempt: there they are user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

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


Surface = Literal["chat", "embeddings", "completions", "moderations", "count_tokens"]


@dataclass(unsafe_hash=True)
class HubRequest:
    """A validated request in the hub format of its surface: for ``chat``, a chat completion body (whatever
    dialect the client spoke); for the other surfaces, the OpenAI body of that endpoint. ``payload`` is shared
    with the request path; never mutate it. ``native``, when set, is the client's body in a dialect some
    providers speak natively (the Responses API, Anthropic token counting), for the adapters that pass it
    through unchanged; ``dialect`` names it."""

    payload: Final[dict[str, Any]]
    model: Final[str]
    stream: Final[bool]
    include_usage: Final[bool]  # the client asked for the final usage chunk
    max_tokens: Final[int | None]
    # A cheap estimate for ranking (about 4 bytes per token); the body length bounds text bytes from above.
    estimated_prompt_tokens: Final[int]
    needs: Final[frozenset[str]]  # capabilities the request uses: tools | vision | json_mode
    surface: Final[Surface]
    native: Final[dict[str, Any] | None]
    dialect: Final[str]  # "responses" | "anthropic" when ``native`` is set

    def __init__(self, payload: dict[str, Any], model: str, stream: bool, include_usage: bool, max_tokens: int | None,
                 estimated_prompt_tokens: int, needs: frozenset[str], surface: Surface = "chat",
                 native: dict[str, Any] | None = None, dialect: str = "") -> None:
        self.payload = payload
        self.model = model
        self.stream = stream
        self.include_usage = include_usage
        self.max_tokens = max_tokens
        self.estimated_prompt_tokens = estimated_prompt_tokens
        self.needs = needs
        self.surface = surface
        self.native = native
        self.dialect = dialect


# A path into the payload as a chain of (parent, key or index) links: built as the walk descends, joined into a
# dotted string only for the one path that is reported. The parent is a ``_Path`` or None, typed ``Any``: mypyc
# (``dataplane.compiled``) overflows its stack on a recursive alias.
_Path = tuple[Any, "str | int"]


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


def _is_objects(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(item, dict) for item in v)


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
        calls = m.get("tool_calls")
        if calls is not None and not _is_objects(calls):  # every translation walks them as call objects
            return invalid(f"'{where}.tool_calls' must be an array of tool call objects", f"{where}.tool_calls")
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
        if v is not None and not _is_objects(v):
            return invalid(f"'{name}' must be an array of objects", name)
    choice = p.get("tool_choice")
    if choice is not None and not isinstance(choice, str) and not (
            isinstance(choice, dict) and isinstance(choice.get("function", {}), dict)):
        return invalid("'tool_choice' must be a string or an object (whose 'function' is an object)", "tool_choice")
    effort = p.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        return invalid("'reasoning_effort' must be a string", "reasoning_effort")
    rf = p.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or not isinstance(rf.get("type"), str)):
        return invalid("'response_format' must be an object with a 'type'", "response_format")
    user = p.get("user")
    if user is not None and not isinstance(user, str):
        return invalid("'user' must be a string", "user")
    return None


def validate_chat(payload: Any, body_len: int) -> HubRequest | ApiError:
    common = _check_common(payload)
    if isinstance(common, ApiError):
        return common
    payload, model = common
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
    return HubRequest(
        payload=payload, model=model, stream=stream,
        include_usage=stream and isinstance(so, dict) and so.get("include_usage") is True,
        max_tokens=max_tokens, estimated_prompt_tokens=body_len // 4 + 1, needs=frozenset(needs),
    )


def _check_common(payload: Any) -> tuple[dict[str, Any], str] | ApiError:
    """What every surface checks first: a JSON object, no banned key at any depth, a model name."""
    if not isinstance(payload, dict):
        return invalid("the request body must be a JSON object")
    banned = find_banned_key(payload)
    if banned is not None:
        return invalid(f"'{banned}' may not be set by clients: upstreams and credentials come from policy",
                       banned, "forbidden_parameter")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return invalid("'model' must be a non-empty string", "model")
    return payload, model


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(v) and v >= 0 for v in value)


def embedding_input_kind(value: Any) -> Literal["text", "tokens"] | None:
    """``text`` (a string or strings), ``tokens`` (token ids, or arrays of them), or None if neither."""
    if isinstance(value, str) and value:
        return "text"
    if isinstance(value, list) and value:
        if all(isinstance(v, str) and v for v in value):
            return "text"
        if _is_token_ids(value) or all(_is_token_ids(v) for v in value):
            return "tokens"
    return None


DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit of inputs per request


def validate_embeddings(payload: Any, body_len: int) -> HubRequest | ApiError:
    """``POST /v1/embeddings``: ``input`` a string, strings, token ids or arrays of them; ``dimensions``;
    ``encoding_format`` float or base64. Token ids need the ``token_input`` capability (OpenAI-native)."""
    common = _check_common(payload)
    if isinstance(common, ApiError):
        return common
    body, model = common
    value = body.get("input")
    kind = embedding_input_kind(value)
    if kind is None:
        return invalid("'input' must be a non-empty string, array of strings, array of token ids or array of "
                       "token id arrays", "input")
    if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS and not _is_token_ids(value):
        return invalid(f"'input' may hold at most {MAX_EMBEDDING_INPUTS} items", "input")
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims < 1):
        return invalid("'dimensions' must be a positive integer", "dimensions")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        return invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    if body.get("stream"):
        return invalid("embeddings cannot be streamed", "stream")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        return invalid("'user' must be a string", "user")
    return HubRequest(payload=body, model=model, stream=False, include_usage=False, max_tokens=0,
                      estimated_prompt_tokens=body_len // 4 + 1,
                      needs=frozenset({"token_input"}) if kind == "tokens" else frozenset(), surface="embeddings")


def validate_completions(payload: Any, body_len: int) -> HubRequest | ApiError:
    """``POST /v1/completions`` (legacy): ``prompt`` a string or strings; the sampling fields of chat."""
    common = _check_common(payload)
    if isinstance(common, ApiError):
        return common
    body, model = common
    prompt = body.get("prompt")
    if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt
                                        and all(isinstance(p, str) for p in prompt))):
        return invalid("'prompt' must be a string or a non-empty array of strings", "prompt")
    stream = body.get("stream", False) or False
    if not isinstance(stream, bool):
        return invalid("'stream' must be a boolean", "stream")
    error = _check_fields(body)
    if error is not None:
        return error
    for name in ("best_of", "logprobs"):
        v = body.get(name)
        if v is not None and (not _is_int(v) or v < 0):
            return invalid(f"'{name}' must be a non-negative integer", name)
    so = body.get("stream_options")
    return HubRequest(payload=body, model=model, stream=stream,
                      include_usage=stream and isinstance(so, dict) and so.get("include_usage") is True,
                      max_tokens=body.get("max_tokens"), estimated_prompt_tokens=body_len // 4 + 1,
                      needs=frozenset(), surface="completions")


def validate_moderations(payload: Any, body_len: int) -> HubRequest | ApiError:
    """``POST /v1/moderations``: ``input`` a string, strings, or multimodal parts."""
    if isinstance(payload, dict) and "model" not in payload:
        payload = {**payload, "model": DEFAULT_MODERATION_MODEL}  # what OpenAI uses when none is named
    common = _check_common(payload)
    if isinstance(common, ApiError):
        return common
    body, model = common
    value = body.get("input")
    if not ((isinstance(value, str) and value) or (isinstance(value, list) and value and all(
            isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("type"), str)) for v in value))):
        return invalid("'input' must be a non-empty string or array of strings or parts", "input")
    return HubRequest(payload=body, model=model, stream=False, include_usage=False, max_tokens=0,
                      estimated_prompt_tokens=body_len // 4 + 1, needs=frozenset(), surface="moderations")
