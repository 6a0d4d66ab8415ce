"""The mock model's JSON: a value valid against a JSON schema, filled from the prompt where a
property's name fits (``schema_instance``). Pure and deterministic.

The schema is the client's: a malformed keyword is ignored, and a schema whose smallest valid value is larger than
``MAX_VALUE_SIZE`` (``minItems: 1e9``, nested ``minProperties``, ``minLength``) or that no finite number satisfies
raises ``ValueError``, which the mock adapter answers as a model server's 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataplane.upstream.adapters.mock.text import (
    _ANSWER_WORDS,
    _GENERIC_VERBS,
    _ISO_DATE,
    _MAX_DEPTH,
    _OPTIONAL_DEPTH,
    _PLACE_WORDS,
    _QUERY_WORDS,
    _WORD,
    _digest,
    _Hints,
    _name_words,
    _near_number,
    _near_value,
    _places,
)

# -- values from JSON schemas --------------------------------------------------------------------------------------

MAX_VALUE_SIZE = 20_000  # JSON values and string characters one instance may hold


class _Budget:
    """What is left of ``MAX_VALUE_SIZE`` for one instance; mutated by the one call that builds it."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_VALUE_SIZE

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise ValueError(f"the schema asks for a value larger than the mock model makes ({MAX_VALUE_SIZE} "
                             "values or characters)")


@dataclass(frozen=True, slots=True)
class _Ctx:
    root: Mapping[str, Any]
    hints: _Hints
    budget: _Budget


def schema_instance(schema: Any, prompt: str = "", variant: int = 0) -> Any:
    """A value valid against a JSON schema (the subset tools and structured output use: types, enum, const,
    anyOf/oneOf/allOf, local $ref, properties/required/additionalProperties, items/prefixItems, the usual
    bounds and formats), with strings taken from ``prompt`` where a property's name fits."""
    return _instance(schema, _Hints(prompt, _places(prompt)), variant)


def _instance(schema: Any, hints: _Hints, variant: int) -> Any:
    root = schema if isinstance(schema, Mapping) else {}
    return _value(schema, _Ctx(root, hints, _Budget()), "", 0, variant)


def _pointer(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#"):
        return {}  # remote references: nothing to follow offline
    node: Any = root
    for part in (p for p in ref[1:].split("/") if p):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _names(value: Any) -> list[str]:
    """The names a ``required`` keyword lists (none when it is not a list)."""
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else []


def _merge(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Both schemas' keywords (``first`` wins a conflict), properties and required lists united."""
    out = {**second, **first}
    if "properties" in first or "properties" in second:
        out["properties"] = {**_mapping(second.get("properties")), **_mapping(first.get("properties"))}
    if "required" in first or "required" in second:
        out["required"] = list(dict.fromkeys([*_names(second.get("required")), *_names(first.get("required"))]))
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
    ctx.budget.spend(1)
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
        listed = schema.get(key)
        options = [_resolve(o, ctx.root) for o in listed if isinstance(o, Mapping)] if isinstance(listed, list) else []
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
    required = _names(schema.get("required"))
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
            # Unnamed: the prompt has nothing for a made-up name (and looking would compile a pattern per key).
            out.setdefault(f"key{i}", _value(extra_schema, ctx, "", depth + 1, variant))
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
    if step is not None and step > 0 and math.isfinite(value / step):
        k = math.ceil(value / step - 1e-9)
        value = round((k if k * step <= ceiling else k - 1) * step, 12)
    if not math.isfinite(value):
        raise ValueError("no finite number satisfies the schema's bounds")
    if integer:
        whole = math.ceil(value)
        fits = whole <= ceiling and not (xhigh is not None and whole >= xhigh)
        chosen = int(whole if fits else math.floor(value))
        return chosen if -(2**63) <= chosen < 2**63 else float(chosen)  # JSON writers stop at 64 bits
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
        ctx.budget.spend(len(value) + 1)
        value = f"{value} {value or 'x'}"
    return value[:hi] if hi is not None else value


def _matching(pattern: str, candidates: list[str], fallback: str) -> str:
    try:
        compiled = re.compile(pattern)
    except re.error:  # ECMA syntax Python does not know: keep the value
        return fallback
    return next((c for c in candidates if compiled.search(c)), fallback)
