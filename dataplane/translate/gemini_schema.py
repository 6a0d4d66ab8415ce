"""JSON Schema (what OpenAI tools and response formats carry) to Gemini's Schema, an OpenAPI 3.0 subset.

Pure. ``gemini_schema`` converts, keeping what maps, dropping what only annotates and refusing (as an
``Untranslatable``) what would change the set of valid values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataplane.translate.anthropic_common import Untranslatable

_MAX_SCHEMA_DEPTH = 32

# JSON Schema → Gemini's Schema (an OpenAPI 3.0 subset).
_TYPES = {"string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN", "array": "ARRAY",
          "object": "OBJECT", "null": "NULL"}
_FORMATS = {"STRING": {"enum", "date-time"}, "INTEGER": {"int32", "int64"}, "NUMBER": {"float", "double"}}
_KEPT = ("title", "description", "nullable", "minItems", "maxItems", "minProperties", "maxProperties", "minLength",
         "maxLength", "pattern", "minimum", "maximum", "example", "default")
# Keywords with no counterpart that only annotate or loosely constrain: dropped (the client still validates).
_DROPPED = frozenset({"$schema", "$id", "$comment", "$anchor", "additionalProperties", "examples", "strict",
                      "readOnly", "writeOnly", "deprecated", "unevaluatedProperties", "exclusiveMinimum",
                      "exclusiveMaximum", "multipleOf", "uniqueItems", "contentEncoding", "contentMediaType",
                      "dependentRequired", "discriminator", "$defs", "definitions"})
# Keywords that change the shape of valid values in ways Gemini's subset cannot express: refused.
_REFUSED = frozenset({"not", "if", "then", "else", "patternProperties", "prefixItems", "dependentSchemas",
                      "propertyNames", "contains", "unevaluatedItems", "$dynamicRef"})


# --- JSON Schema → Gemini's Schema --------------------------------------------------------------------------------

def gemini_schema(schema: dict[str, Any], where: str, ordered: bool = False) -> dict[str, Any] | Untranslatable:
    """``schema`` (JSON Schema, as OpenAI takes it) in Gemini's OpenAPI subset: ``type`` upper-cased (a list with
    ``null`` → ``nullable``, with several types → ``anyOf``), ``properties``, ``required`` (only of declared
    properties), string ``enum``s (``const`` → a one-value ``enum``), ``items``, ``anyOf``/``oneOf`` (a ``null``
    branch → ``nullable``), one-element ``allOf`` merged, local ``$ref``s (``#/$defs/...``, ``#/definitions/...``)
    inlined, ``format`` where Gemini knows it, and the kept annotations and bounds (``_KEPT``); ``_DROPPED``
    keywords (``additionalProperties``, ``$schema``, ...) are left out. Refused: ``_REFUSED`` keywords, recursive
    or remote ``$ref``s, non-string enums, tuple ``items``, several ``allOf`` branches, and nested objects without
    ``properties`` (free-form maps: Google requires an OBJECT's properties). ``ordered`` adds
    ``propertyOrdering`` in declared order (Gemini otherwise orders a response's keys alphabetically)."""
    return _Schemas(schema, ordered).convert(schema, where)


@dataclass(slots=True)
class _Schemas:
    root: dict[str, Any]
    ordered: bool

    def convert(self, schema: Any, where: str, refs: tuple[str, ...] = (), depth: int = 0,
                nested: bool = False) -> dict[str, Any] | Untranslatable:
        """``refs``: the ``$ref``s being inlined on this path (a repeat is recursion); ``nested``: below the root."""
        if depth > _MAX_SCHEMA_DEPTH:
            return Untranslatable(f"'{where}': the schema nests too deeply for this model's provider", where)
        if not isinstance(schema, dict):
            return Untranslatable(f"'{where}' must be a JSON schema object", where)
        if "$ref" in schema:
            resolved = self._resolve(schema, where, refs)
            if isinstance(resolved, Untranslatable):
                return resolved
            schema, refs = resolved
        refused = sorted(_REFUSED & schema.keys())
        if refused:
            return Untranslatable(f"'{where}': the JSON schema keyword {refused[0]!r} cannot be expressed in this "
                                  "model's provider's schema", where)
        if "allOf" in schema:
            branches = schema["allOf"]
            if not isinstance(branches, list) or len(branches) != 1 or not isinstance(branches[0], dict):
                return Untranslatable(f"'{where}': 'allOf' with several schemas cannot be expressed in this "
                                      "model's provider's schema", where)
            merged = {**{k: v for k, v in schema.items() if k != "allOf"}, **branches[0]}
            return self.convert(merged, where, refs, depth + 1, nested)
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind or not all(isinstance(k, str) for k in kind):
                return Untranslatable(f"'{where}.type' must be a JSON schema type or a list of them",
                                      f"{where}.type")
            rest = {k: v for k, v in schema.items() if k != "type"}
            real = [k for k in kind if k != "null"]
            if len(real) > 1:  # ["string", "integer"]: one branch per type, the annotations outside
                outer = {k: rest.pop(k) for k in ("title", "description", "default", "example") if k in rest}
                branches = [{**rest, "type": k} for k in real] + ([{"type": "null"}] if len(real) < len(kind) else [])
                return self.convert({**outer, "anyOf": branches}, where, refs, depth + 1, nested)
            schema = {**rest, "type": real[0] if real else "null"}
            if len(real) < len(kind):
                schema["nullable"] = True
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._any_of(schema, key, where, refs, depth, nested)
        out: dict[str, Any] = {}
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if kind is not None:
            if not isinstance(kind, str) or kind.lower() not in _TYPES:
                return Untranslatable(f"'{where}.type' must be a JSON schema type", f"{where}.type")
            out["type"] = _TYPES[kind.lower()]
        for key in _KEPT:
            if key in schema and schema[key] is not None:
                out[key] = schema[key]
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = fmt
        enum = self._enum(schema, where)
        if isinstance(enum, Untranslatable):
            return enum
        if enum is not None:
            out["enum"] = enum
            out.setdefault("type", "STRING")
        if out.get("type") == "OBJECT":
            error = self._object(schema, out, where, refs, depth, nested)
            if error is not None:
                return error
        if out.get("type") == "ARRAY" and "items" in schema:
            items = schema["items"]
            if isinstance(items, list):
                return Untranslatable(f"'{where}.items': tuple schemas (a list of 'items') cannot be expressed in "
                                      "this model's provider's schema", f"{where}.items")
            converted = self.convert(items, f"{where}.items", refs, depth + 1, nested=True)
            if isinstance(converted, Untranslatable):
                return converted
            out["items"] = converted
        return out

    def _resolve(self, schema: dict[str, Any], where: str,
                 refs: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]] | Untranslatable:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith(("#/$defs/", "#/definitions/")):
            return Untranslatable(f"'{where}': only local '$ref's (#/$defs/...) can be inlined for this model's "
                                  "provider", where)
        if ref in refs:
            return Untranslatable(f"'{where}': recursive schemas ({ref}) cannot be expressed in this model's "
                                  "provider's schema", where)
        _, section, name = ref.split("/", 2)
        defs = self.root.get(section)
        target = defs.get(name) if isinstance(defs, dict) else None
        if not isinstance(target, dict):
            return Untranslatable(f"'{where}': '$ref' {ref} names no definition", where)
        # Keywords beside a $ref (a description, say) refine the definition it points to.
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}, (*refs, ref)

    def _any_of(self, schema: dict[str, Any], key: str, where: str, refs: tuple[str, ...], depth: int,
                nested: bool) -> dict[str, Any] | Untranslatable:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            return Untranslatable(f"'{where}.{key}' must be a non-empty list of schemas", f"{where}.{key}")
        rest = {k: v for k, v in schema.items() if k != key}
        real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null" and len(b) == 1)]
        nullable = len(real) < len(branches) or rest.pop("nullable", False) is True
        if len(real) == 1 and isinstance(real[0], dict):
            # Optional[X]: X, nullable; the outer description and bounds apply to it.
            merged = self.convert({**real[0], **rest}, where, refs, depth + 1, nested)
            if isinstance(merged, Untranslatable):
                return merged
            return {**merged, "nullable": True} if nullable else merged
        converted = []
        for i, branch in enumerate(real):
            one = self.convert(branch, f"{where}.{key}[{i}]", refs, depth + 1, nested=True)
            if isinstance(one, Untranslatable):
                return one
            converted.append(one)
        out: dict[str, Any] = {k: rest[k] for k in ("title", "description", "default", "example") if k in rest}
        out["anyOf"] = converted
        if nullable:
            out["nullable"] = True
        return out

    @staticmethod
    def _enum(schema: dict[str, Any], where: str) -> list[str] | Untranslatable | None:
        if "const" in schema:
            values: Any = [schema["const"]]
        elif "enum" in schema:
            values = schema["enum"]
        else:
            return None
        kept = [v for v in values if v is not None] if isinstance(values, list) else None
        if not kept or not all(isinstance(v, str) for v in kept):
            return Untranslatable(f"'{where}': this model's provider takes enums of strings only", f"{where}.enum")
        return kept

    def _object(self, schema: dict[str, Any], out: dict[str, Any], where: str, refs: tuple[str, ...], depth: int,
                nested: bool) -> Untranslatable | None:
        props = schema.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            return Untranslatable(f"'{where}.properties' must be an object", f"{where}.properties")
        if not props and nested:
            return Untranslatable(f"'{where}': an object without 'properties' (a free-form map) cannot be expressed "
                                  "in this model's provider's schema", where)
        converted: dict[str, Any] = {}
        for name, sub in props.items():
            one = self.convert(sub, f"{where}.properties.{name}", refs, depth + 1, nested=True)
            if isinstance(one, Untranslatable):
                return one
            converted[name] = one
        out["properties"] = converted
        required = schema.get("required")
        if isinstance(required, list):
            kept = [r for r in required if isinstance(r, str) and r in converted]
            if kept:
                out["required"] = kept
        if self.ordered and len(converted) > 1:
            out["propertyOrdering"] = list(converted)
        return None
