"""A small JSON schema validator (jsonschema is not installed), for the keywords the mock provider's schema
generator claims to honour, and the schemas and tools the mock model's tests share."""

from __future__ import annotations

import datetime
import enum
import math
import re
import uuid
from typing import Any, Literal

import orjson
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

from dataplane.upstream.adapters.mock.model import chat_completion


def _resolve_ref(root: Any, ref: str) -> Any:
    node = root
    for part in (p for p in ref.lstrip("#").split("/") if p):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _is_type(value: Any, kind: str) -> bool:
    return {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer()),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }[kind]


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)


def _format_ok(value: str, fmt: str) -> bool:
    checks: dict[str, Any] = {
        "date": datetime.date.fromisoformat,
        "date-time": lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")),
        "uuid": uuid.UUID,
        "email": lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", v) or (_ for _ in ()).throw(ValueError()),
    }
    try:
        checks.get(fmt, str)(value)
    except ValueError:
        return False
    return True


def schema_errors(value: Any, schema: Any, root: Any = None, path: str = "$") -> list[str]:
    root = schema if root is None else root
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: the false schema"]
    errors: list[str] = []
    if "$ref" in schema:
        errors += schema_errors(value, _resolve_ref(root, schema["$ref"]), root, path)
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, root, path)
    if "anyOf" in schema and all(schema_errors(value, s, root, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches no anyOf branch")
    if "oneOf" in schema and sum(not schema_errors(value, s, root, path) for s in schema["oneOf"]) != 1:
        errors.append(f"{path}: matches not exactly one oneOf branch")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{path}: not the const {schema['const']!r}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} not in the enum")
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds is not None and not any(_is_type(value, k) for k in kinds):
        return [*errors, f"{path}: {value!r} is not of type {kinds}"]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing required {r!r}" for r in schema.get("required", []) if r not in value]
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected property {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], root, f"{path}.{key}")
        if len(value) < schema.get("minProperties", 0) or len(value) > schema.get("maxProperties", math.inf):
            errors.append(f"{path}: wrong number of properties")
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += schema_errors(item, sub, root, f"{path}[{i}]")
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", math.inf):
            errors.append(f"{path}: wrong number of items")
        if schema.get("uniqueItems") and len({orjson.dumps(v) for v in value}) != len(value):
            errors.append(f"{path}: items not unique")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", math.inf):
            errors.append(f"{path}: wrong length")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
        if "format" in schema and not _format_ok(value, schema["format"]):
            errors.append(f"{path}: {value!r} is not a {schema['format']}")
    if _is_type(value, "number"):
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            errors.append(f"{path}: {value} out of bounds")
        if value <= schema.get("exclusiveMinimum", -math.inf) or value >= schema.get("exclusiveMaximum", math.inf):
            errors.append(f"{path}: {value} out of exclusive bounds")
        step = schema.get("multipleOf")
        if step and abs(value / step - round(value / step)) > 1e-9:
            errors.append(f"{path}: {value} not a multiple of {step}")
    return errors


# -- schema instances ----------------------------------------------------------------------------------------------

WEATHER_PARAMS = {"type": "object", "properties": {
    "city": {"type": "string", "description": "The city"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}
GET_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                                "parameters": WEATHER_PARAMS}}
SEARCH = {"type": "function", "function": {"name": "search_docs", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["query"]}}}

SCHEMAS: list[tuple[str, dict[str, Any], str]] = [
    ("scalars", {"type": "object", "properties": {
        "s": {"type": "string"}, "n": {"type": "number"}, "i": {"type": "integer"}, "b": {"type": "boolean"},
        "z": {"type": "null"}}, "required": ["s", "n", "i", "b", "z"], "additionalProperties": False}, ""),
    ("enum and const", {"type": "object", "properties": {
        "unit": {"enum": ["celsius", "fahrenheit"]}, "v": {"const": 3}, "mixed": {"enum": [1, "two", None]}},
        "required": ["unit", "v", "mixed"]}, "in fahrenheit please"),
    ("bounds", {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 10, "maximum": 12}, "b": {"type": "number", "exclusiveMinimum": 0,
                                                                      "exclusiveMaximum": 1},
        "c": {"type": "integer", "multipleOf": 5, "minimum": 7}, "d": {"type": "number", "maximum": -3},
        "e": {"type": "integer", "exclusiveMaximum": 0}},
        "required": ["a", "b", "c", "d", "e"]}, ""),
    ("strings", {"type": "object", "properties": {
        "short": {"type": "string", "maxLength": 3}, "long": {"type": "string", "minLength": 30},
        "code": {"type": "string", "pattern": "^[A-Z][0-9]$"}, "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"},
        "mail": {"type": "string", "format": "email"}},
        "required": ["short", "long", "code", "day", "at", "id", "mail"]}, ""),
    ("arrays", {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        "none": {"type": "array", "items": {"type": "integer"}, "maxItems": 0},
        "nums": {"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "minItems": 2,
                 "uniqueItems": True}},
        "required": ["tags", "pair", "none", "nums"]}, ""),
    ("nested, anyOf, type lists", {"type": "object", "properties": {
        "owner": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                  "required": ["name", "age"], "additionalProperties": False},
        "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 4}]},
        "either": {"type": ["null", "string"]},
        "one": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "map": {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2}},
        "required": ["owner", "maybe", "either", "one", "map"]}, "the owner is named Alice"),
    ("refs and allOf", {"$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}},
                                            "required": ["x"]},
                                  "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
                        "type": "object", "properties": {
                            "p": {"$ref": "#/$defs/Point"}, "tree": {"$ref": "#/$defs/Node"},
                            "both": {"allOf": [{"$ref": "#/$defs/Point"}, {"properties": {"y": {"type": "string"}},
                                                                          "required": ["y"]}]}},
                        "required": ["p", "tree", "both"]}, ""),
    ("a loose tool schema", {"type": "object", "properties": {"city": {"type": "string"},
                                                              "days": {"type": "integer"}}}, "forecast for Oslo"),
    ("untyped", {"description": "anything"}, ""),
]


class Unit(enum.Enum):
    C = "celsius"
    F = "fahrenheit"


class Reading(BaseModel):
    city: str
    temperature: float
    unit: Unit
    raining: bool
    tags: list[str]
    note: str | None
    day: datetime.date


class Report(BaseModel):
    title: str
    kind: Literal["daily", "weekly"]
    readings: list[Reading]
    count: int = Field(ge=3, le=9)


def chat(payload: dict[str, Any], limit: int | None) -> ChatCompletion:
    """The mock model's chat completion of ``payload``, as the openai SDK's type."""
    return ChatCompletion.model_validate(chat_completion(payload, "mock-model", "chatcmpl-mock1", 1700000000, limit))
