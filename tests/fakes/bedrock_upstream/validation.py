"""Request validation: a body against its operation's shape in botocore's service model (``check_shape``), a
Converse conversation against Bedrock's rules (``converse_problem``), and an InvokeModel body against its model's
native JSON schema (``native_problem`` with ``ANTHROPIC_FIELDS``, ``TITAN_V1_FIELDS``, ``TITAN_V2_FIELDS``,
``COHERE_FIELDS``)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from botocore.loaders import create_loader  # type: ignore[import-untyped]
from botocore.model import ServiceModel  # type: ignore[import-untyped]

from tests.fakes.bedrock_upstream.sigv4 import Refusal
from tests.fakes.bedrock_upstream.tokens import _json_text

ANTHROPIC_VERSION = "bedrock-2023-05-31"


@cache
def service_model() -> Any:
    """botocore's model of Bedrock Runtime (``bedrock-runtime/2023-09-30/service-2.json``)."""
    return ServiceModel(create_loader().load_service_model("bedrock-runtime", "service-2", "2023-09-30"),
                        "bedrock-runtime")


@dataclass
class _Problems:
    serialization: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


def _walk(shape: Any, value: Any, path: str, problems: _Problems) -> None:
    kind = shape.type_name
    where = path or "request"
    if kind == "structure" and shape.is_document_type:
        return
    if value is None:
        problems.validation.append(f"Value null at '{where}' failed to satisfy constraint: Member must not be null")
        return
    matches = {"structure": isinstance(value, dict), "map": isinstance(value, dict), "list": isinstance(value, list),
               "string": isinstance(value, str), "blob": isinstance(value, str), "boolean": isinstance(value, bool),
               "timestamp": isinstance(value, int | float | str) and not isinstance(value, bool)}.get(
        kind, isinstance(value, int | float) and not isinstance(value, bool)
        and (kind in ("float", "double") or isinstance(value, int)))
    if not matches:
        problems.serialization.append(f"Expected {kind} at '{where}', got "
                                      f"{type(value).__name__} {_shown(value)[:80]}")
        return
    meta = shape.metadata
    if kind == "structure":
        members = shape.members
        body_members = {name: member for name, member in members.items()
                        if member.serialization.get("location") not in ("uri", "header", "querystring")}
        for key in value:
            if key not in body_members:
                problems.validation.append(f"Value at '{where}' failed to satisfy constraint: extraneous key [{key}] "
                                           f"is not permitted")
        for name in shape.required_members:
            if name in body_members and value.get(name) is None:
                problems.validation.append(f"Value null at '{path + '.' if path else ''}{name}' failed to satisfy "
                                           f"constraint: Member must not be null")
        present = [key for key in value if key in body_members and value[key] is not None]
        if shape.is_tagged_union and len(present) != 1:
            problems.validation.append(f"Value at '{where}' failed to satisfy constraint: Member must have exactly "
                                       f"one member set, found {len(present)}")
        for key in present:
            _walk(body_members[key], value[key], f"{path}.{key}" if path else key, problems)
        return
    size: float | None = None
    if kind == "list":
        size = len(value)
        for i, item in enumerate(value):
            _walk(shape.member, item, f"{where}.{i + 1}.member", problems)
    elif kind == "map":
        size = len(value)
        for key, item in value.items():
            _walk(shape.key, key, f"{where}.{key}.key", problems)
            _walk(shape.value, item, f"{where}.{key}.value", problems)
    elif kind == "string":
        size = len(value)
        if shape.enum and value not in shape.enum:
            problems.validation.append(f"Value '{value}' at '{where}' failed to satisfy constraint: Member must "
                                       f"satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            problems.validation.append(f"Value '{value}' at '{where}' failed to satisfy constraint: Member must "
                                       f"satisfy regular expression pattern: {pattern}")
    elif kind == "blob":
        try:
            size = len(base64.b64decode(value, validate=True))
        except binascii.Error:
            problems.serialization.append(f"Base64 encoded value expected at '{where}'")
            return
    if kind in ("integer", "long", "float", "double"):
        if "min" in meta and value < meta["min"]:
            problems.validation.append(f"Value '{value}' at '{where}' failed to satisfy constraint: Member must have "
                                       f"value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            problems.validation.append(f"Value '{value}' at '{where}' failed to satisfy constraint: Member must have "
                                       f"value less than or equal to {meta['max']}")
    elif size is not None:
        if "min" in meta and size < meta["min"]:
            problems.validation.append(f"Value at '{where}' failed to satisfy constraint: Member must have length "
                                       f"greater than or equal to {meta['min']}")
        if "max" in meta and size > meta["max"]:
            problems.validation.append(f"Value at '{where}' failed to satisfy constraint: Member must have length "
                                       f"less than or equal to {meta['max']}")


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def check_shape(operation: str, body: Any) -> Refusal | None:
    """Why the service would refuse ``body`` as the JSON payload of ``operation`` (e.g. ``Converse``) by its model:
    a ``SerializationException`` for a wrong JSON type, else a ``ValidationException`` listing every violated
    constraint, as AWS words it ("2 validation errors detected: ..."). None when it conforms."""
    problems = _Problems()
    if not isinstance(body, dict):
        return Refusal("SerializationException", "Start of structure or map expected")
    _walk(service_model().operation_model(operation).input_shape, body, "", problems)
    if problems.serialization:
        return Refusal("SerializationException", problems.serialization[0])
    if problems.validation:
        count = len(problems.validation)
        return Refusal("ValidationException", f"{count} validation error{'s' if count > 1 else ''} detected: "
                                                  + "; ".join(problems.validation))
    return None


def converse_problem(body: Mapping[str, Any]) -> str | None:
    """Why Bedrock would refuse a shape-valid Converse body by its conversation rules (a 400
    ``ValidationException`` with this message), else None."""
    messages = body.get("messages") or []
    if not messages or messages[0]["role"] != "user":
        return "A conversation must start with a user message. Try again with a conversation that starts with a user " \
               "message."
    uses_tools = False
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role not in ("user", "assistant") or (i > 0 and role == messages[i - 1]["role"]):
            return ("A conversation must alternate between user and assistant roles. Make sure the conversation "
                    "alternates between user and assistant roles and try again.")
        if not content:
            return (f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to "
                    f"the content field and try again.")
        for j, block in enumerate(content):
            if "text" in block and not block["text"].strip():
                return (f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to "
                        f"the text field, and try again.")
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
        results = [block["toolResult"]["toolUseId"] for block in content if "toolResult" in block]
        if role == "user":
            if len(results) > len(pending):
                return (f"The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse "
                        f"blocks of previous turn.")
            if pending - set(results):
                return (f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                        f"{', '.join(sorted(pending - set(results)))}")
            pending = set()
        else:
            if results:
                return f"The toolResult blocks at messages.{i}.content are only allowed in a user message."
            pending = {block["toolUse"]["toolUseId"] for block in content if "toolUse" in block}
    config = body.get("toolConfig")
    if uses_tools and not config:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    if config:
        names = [t["toolSpec"]["name"] for t in config["tools"] if "toolSpec" in t]
        forced = (config.get("toolChoice") or {}).get("tool")
        if forced is not None and forced["name"] not in names:
            return (f"The tool {forced['name']} specified in toolConfig.toolChoice.tool is not defined in "
                    f"toolConfig.tools. Specify a defined tool and try again.")
    return None


@dataclass(frozen=True)
class _Field:
    """A native (InvokeModel) body field as Bedrock's JSON-schema validator checks it."""

    kind: str
    enum: tuple[Any, ...] = ()
    items: _Field | None = None
    max_items: int | None = None
    min_length: int | None = None


_JSON_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "string": (str, "String"), "integer": (int, "Integer"), "number": ((int, float), "Number"),
    "boolean": (bool, "Boolean"), "array": (list, "JSONArray"), "object": (dict, "JSONObject")}


def _found(value: Any) -> str:
    if value is None:
        return "Null"
    return {bool: "Boolean", int: "Integer", float: "BigDecimal", str: "String", list: "JSONArray",
            dict: "JSONObject"}.get(type(value), "Object")


def _field_problems(spec: _Field, value: Any, path: str) -> list[str]:
    if spec.kind != "any":
        types, name = _JSON_KINDS[spec.kind]
        if not isinstance(value, types) or (isinstance(value, bool) and spec.kind != "boolean"):
            return [f"{path}: expected type: {name}, found: {_found(value)}"]
    if spec.enum and value not in spec.enum:
        return [f"{path}: {value} is not a valid enum value"]
    if spec.min_length is not None and len(value) < spec.min_length:
        return [f"{path}: expected minLength: {spec.min_length}, actual: {len(value)}"]
    problems: list[str] = []
    if spec.kind == "array":
        if spec.max_items is not None and len(value) > spec.max_items:
            problems.append(f"{path}: expected maximum item count: {spec.max_items}, found: {len(value)}")
        if spec.items is not None:
            for i, item in enumerate(value):
                problems += _field_problems(spec.items, item, f"{path}/{i}")
    return problems


def native_problem(body: Any, fields: Mapping[str, _Field], required: Iterable[str]) -> str | None:
    """Bedrock's "Malformed input request: ..." for an InvokeModel body that breaks a model's JSON schema, or None."""
    if not isinstance(body, dict):
        return f"Malformed input request: #: expected type: JSONObject, found: {_found(body)}, please reformat your " \
               f"input and try again."
    problems = [f"#: required key [{name}] not found" for name in required if name not in body]
    problems += [f"#: extraneous key [{name}] is not permitted" for name in body if name not in fields]
    for name, spec in fields.items():
        if name in body:
            problems += _field_problems(spec, body[name], f"#/{name}")
    if not problems:
        return None
    return "Malformed input request: " + "".join(problems) + ", please reformat your input and try again."


_STRINGS = _Field("array", items=_Field("string"))
ANTHROPIC_FIELDS = {
    "anthropic_version": _Field("string", enum=(ANTHROPIC_VERSION,)), "anthropic_beta": _STRINGS,
    "max_tokens": _Field("integer"), "messages": _Field("array", items=_Field("object")), "system": _Field("any"),
    "temperature": _Field("number"), "top_p": _Field("number"), "top_k": _Field("integer"),
    "stop_sequences": _STRINGS, "tools": _Field("array", items=_Field("object")), "tool_choice": _Field("object"),
    "thinking": _Field("object")}
TITAN_V2_FIELDS = {"inputText": _Field("string", min_length=1), "dimensions": _Field("integer", enum=(256, 512, 1024)),
                   "normalize": _Field("boolean"),
                   "embeddingTypes": _Field("array", items=_Field("string", enum=("float", "binary")))}
TITAN_V1_FIELDS = {"inputText": _Field("string", min_length=1)}
COHERE_FIELDS = {
    "texts": _Field("array", items=_Field("string"), max_items=96), "images": _STRINGS,
    "input_type": _Field("string", enum=("search_document", "search_query", "classification", "clustering",
                                         "image")),
    "truncate": _Field("string", enum=("NONE", "START", "END")),
    "embedding_types": _Field("array", items=_Field("string", enum=("float", "int8", "uint8", "binary", "ubinary")))}
