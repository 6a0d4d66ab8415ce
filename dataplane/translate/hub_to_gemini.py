"""Outbound translation: the gateway calling Google's Gemini models (the Gemini API and Vertex AI) for a hub request.

Pure: no I/O, no clock, no randomness (the caller passes ``created`` and a ``call_seed`` for generated ids); what
cannot be translated is an ``Untranslatable`` value, a prompt Google refused is a ``Blocked`` value, an error
object inside a stream is a ``StreamError``. Bodies are the REST API's JSON, field names in camelCase.

Chat, ``gemini_request`` (hub chat payload → GenerateContentRequest; the same body for both APIs):

- ``system``/``developer`` messages → ``systemInstruction``; ``user`` → role ``user``, ``assistant`` → ``model``;
  consecutive messages of one role share a turn, and the results of consecutive ``tool`` messages share one user
  turn of ``functionResponse`` parts (never mixed with a following user text turn).
- parts: text; ``image_url``/``file`` data URLs and ``input_audio`` → ``inlineData`` (remote image URLs are refused:
  Google fetches only its own ``fileData`` URIs); empty texts are left out (Google refuses empty parts).
- assistant ``tool_calls`` → ``functionCall`` parts (arguments parsed as a JSON object); ``tool`` messages →
  ``functionResponse`` (the function's name looked up from the call id in a preceding assistant message; the content
  as the response object when it is a JSON object, else ``{"result": content}``).
- Thought signatures: Gemini signs the function calls of thinking models and Gemini 3 refuses a later turn whose
  calls lost their signature. OpenAI's messages have no field for it, so the signature travels inside the tool
  call id the client echoes back (``call_<hex>__sig_<url-safe base64>``, ``call_id``/``thought_signature``); a
  Gemini 3 call without one (made by another model) gets Google's documented placeholder
  ``skip_thought_signature_validator``. Limit: such ids are long (OpenAI itself takes ids of at most 40 characters,
  so a conversation moved from Gemini to an OpenAI upstream mid-way would need its ids shortened).
- ``tools`` (function tools only) → ``[{functionDeclarations}]`` with the JSON-schema parameters converted to
  Gemini's OpenAPI subset (``gemini_schema``); ``tool_choice`` auto/none/required/named → ``functionCallingConfig``
  ``AUTO``/``NONE``/``ANY``/``ANY`` + ``allowedFunctionNames``. ``parallel_tool_calls`` has no counterpart (ignored).
- ``generationConfig``: ``maxOutputTokens`` is the client's ``max_completion_tokens``/``max_tokens`` capped at the
  deployment's ``max_output_tokens`` and set to it when the client gave none: the budget reservation assumes a
  true output bound, and on Gemini thinking tokens count against ``maxOutputTokens``, so it is one. Also
  ``temperature``, ``topP``, ``stopSequences``, ``candidateCount`` (``n``), ``seed``, ``presencePenalty``,
  ``frequencyPenalty``, ``responseMimeType``/``responseSchema`` (``response_format`` json_object/json_schema) and
  ``thinkingConfig.thinkingBudget`` from ``reasoning_effort`` (``THINKING_BUDGETS``; ``none`` → 0, which Gemini's
  pro models refuse with their own 400). Ignored: ``logprobs``, ``logit_bias``, ``user``, ``metadata``, ``store``,
  ``service_tier``. Refused: legacy ``functions``, non-function tools, parts of other types.

Answers: ``openai_completion`` (GenerateContentResponse → ``chat.completion``) and ``GeminiChunkTranslator`` (one
parsed SSE chunk at a time → ``chat.completion.chunk`` payloads). Text parts are joined (``thought`` parts left out:
chat completions has no place for them), ``functionCall`` parts become ``tool_calls`` (JSON arguments, generated
ids), finish reasons map by ``FINISH_REASONS`` (a stop with function calls is ``tool_calls``). A prompt refused
(``promptFeedback.blockReason``, no candidates) is ``Blocked``, which the adapter turns into a 400
``content_filter``; a candidate stopped for safety is an answer whose ``finish_reason`` is ``content_filter``.
Usage (``openai_usage``): ``prompt_tokens`` = ``promptTokenCount`` (+ ``toolUsePromptTokenCount``), which already
holds cached content; ``completion_tokens`` = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (OpenAI counts
reasoning as output); ``completion_tokens_details.reasoning_tokens`` = thoughts, ``prompt_tokens_details.
cached_tokens`` = ``cachedContentTokenCount``. In a stream Gemini repeats the cumulative usage on every chunk and
Vertex sends it on the last one only: the translator keeps the latest and emits it once, in a final usage-only
chunk (``choices: []``), as OpenAI does.

Embeddings: the Gemini API's ``:batchEmbedContents`` (``gemini_embedding_bodies``, at most ``GEMINI_EMBED_BATCH``
texts a call), which answers no token counts: ``estimated_embedding_tokens`` estimates them at about four
characters a token, and the answer's ``usage`` carries that estimate. Vertex's ``:predict`` for its text-embedding
models (``vertex_embedding_bodies``, at most ``VERTEX_EMBED_BATCH`` texts a call, one for ``gemini-embedding-*``,
which takes one instance per request), whose ``statistics.token_count`` are summed. ``dimensions`` (the client's,
else the deployment's) → ``outputDimensionality``; token-id inputs are refused. ``openai_embeddings`` builds
OpenAI's answer, ``base64`` encoded by the gateway (little-endian float32, as OpenAI encodes it).

Token counting: ``count_tokens_body`` (the hub payload, e.g. an Anthropic Messages body translated, as a countTokens
request: the Gemini API's ``generateContentRequest`` form, which counts the system instruction and tools too, or
Vertex's flat form) and ``input_tokens`` (``totalTokens`` → ``{"input_tokens": N}``).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from dataplane.translate.anthropic_common import StreamError, Untranslatable, count, text_of

FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
                  "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
                  "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
                  "IMAGE_PROHIBITED_CONTENT": "content_filter", "IMAGE_RECITATION": "content_filter",
                  "MODEL_ARMOR": "content_filter"}
# reasoning_effort → thinkingBudget. 512 is the smallest budget every thinking model takes (flash-lite's floor).
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
GEMINI_EMBED_BATCH = 100  # batchEmbedContents takes at most 100 requests
VERTEX_EMBED_BATCH = 250  # :predict takes at most 250 instances
SKIP_SIGNATURE = "skip_thought_signature_validator"  # Google's placeholder for calls no Gemini model signed
_SIGNATURE_MARK = "__sig_"
_MAX_SCHEMA_DEPTH = 32

_TOOL_CHOICES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
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


@dataclass(frozen=True, slots=True)
class Blocked:
    """Google refused the prompt itself (``promptFeedback.blockReason``): no candidate was generated."""

    reason: str
    message: str = ""


# --- requests ----------------------------------------------------------------------------------------------------

def gemini_request(payload: dict[str, Any], max_output_tokens: int,
                   upstream_model: str = "") -> dict[str, Any] | Untranslatable:
    """The GenerateContentRequest body for an (already validated) hub chat payload. ``max_output_tokens`` is the
    deployment's output limit (0: none); ``upstream_model`` decides whether unsigned function calls need Gemini 3's
    placeholder signature."""
    if payload.get("functions") is not None or payload.get("function_call") is not None:
        return Untranslatable("legacy 'functions' are not supported by this model's provider: use 'tools'",
                              "functions")
    body = _conversation(payload, upstream_model.startswith("gemini-3"))
    if isinstance(body, Untranslatable):
        return body
    tools = payload.get("tools")
    if tools:
        declarations = []
        for j, tool in enumerate(tools):
            declaration = _declaration(tool, f"tools[{j}]")
            if isinstance(declaration, Untranslatable):
                return declaration
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
        config = _function_calling(payload.get("tool_choice"))
        if isinstance(config, Untranslatable):
            return config
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(payload, max_output_tokens)
    if isinstance(generation, Untranslatable):
        return generation
    if generation:
        body["generationConfig"] = generation
    return body


def _conversation(payload: dict[str, Any], placeholder_signatures: bool) -> dict[str, Any] | Untranslatable:
    """``contents`` and ``systemInstruction`` of the payload's messages."""
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []  # (kind: user | model | function, parts)
    names: dict[str, str] = {}  # tool call id → function name, from the assistant messages so far
    for i, m in enumerate(payload["messages"]):
        role, where = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            text = text_of(m.get("content"))
            if text:
                system.append(text)
            continue
        if role in ("tool", "function"):
            part = _function_response(m, names, where)
            if isinstance(part, Untranslatable):
                return part
            kind, parts = "function", [part]
        elif role == "assistant":
            model_parts = _model_parts(m, names, where, placeholder_signatures)
            if isinstance(model_parts, Untranslatable):
                return model_parts
            kind, parts = "model", model_parts
        else:
            user_parts = _user_parts(m.get("content"), where)
            if isinstance(user_parts, Untranslatable):
                return user_parts
            kind, parts = "user", user_parts
        if not parts:
            continue  # an empty message: Google refuses turns without parts
        if turns and turns[-1][0] == kind:
            turns[-1][1].extend(parts)
        else:
            turns.append((kind, parts))
    if not turns:
        return Untranslatable("the conversation has no user or assistant content this model's provider can take",
                              "messages")
    body: dict[str, Any] = {"contents": [{"role": "model" if kind == "model" else "user", "parts": parts}
                                         for kind, parts in turns]}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    return body


def _user_parts(content: Any, where: str) -> list[dict[str, Any]] | Untranslatable:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        at, kind = f"{where}.content[{j}]", part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blob = _data_url(url, at, "image")
            if isinstance(blob, Untranslatable):
                return blob
            parts.append({"inlineData": blob})
        elif kind == "input_audio":
            audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
            mime = _AUDIO_TYPES.get(str(audio.get("format")))
            if mime is None or not isinstance(audio.get("data"), str):
                return Untranslatable(f"'{at}.input_audio' must carry base64 'data' of format wav or mp3", at)
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif kind == "file":
            file = part.get("file") if isinstance(part.get("file"), dict) else {}
            blob = _data_url(file.get("file_data"), at, "file")
            if isinstance(blob, Untranslatable):
                return blob
            parts.append({"inlineData": blob})
        else:
            return Untranslatable(f"'{at}': parts of type {kind!r} are not supported by this model's provider", at)
    return parts


def _data_url(url: Any, where: str, what: str) -> dict[str, str] | Untranslatable:
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return Untranslatable(f"'{where}': this model's provider does not fetch remote {what} URLs; send the {what} "
                              "inline as a base64 data URL (data:<media type>;base64,...)", where)
    if not isinstance(url, str) or not url.startswith("data:"):
        return Untranslatable(f"'{where}': the {what} must be a base64 data URL (data:<media type>;base64,...)", where)
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type or not data:
        return Untranslatable(f"'{where}': {what} data URLs must look like 'data:<media type>;base64,<data>'", where)
    return {"mimeType": media_type, "data": data}


def _model_parts(m: dict[str, Any], names: dict[str, str], where: str,
                 placeholder_signatures: bool) -> list[dict[str, Any]] | Untranslatable:
    text = text_of(m.get("content"))
    if not text and isinstance(m.get("content"), list):
        text = "".join(p.get("refusal", "") for p in m["content"] if isinstance(p, dict)
                       and isinstance(p.get("refusal"), str))
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for j, call in enumerate(m.get("tool_calls") or []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return Untranslatable(f"'{where}.tool_calls[{j}]' must be a function call with a name",
                                  f"{where}.tool_calls[{j}]")
        try:
            arguments = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            return Untranslatable(f"'{where}.tool_calls[{j}].function.arguments' must be a JSON object",
                                  f"{where}.tool_calls[{j}].function.arguments")
        call_id = call.get("id") if isinstance(call.get("id"), str) else ""
        if call_id:
            names[call_id] = fn["name"]
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": arguments}}
        signature = thought_signature(call_id)
        if signature is None and placeholder_signatures and j == 0:
            signature = SKIP_SIGNATURE  # Gemini 3 checks the first call of each turn
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(m: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any] | Untranslatable:
    if m["role"] == "function":  # legacy: the function's name is on the message
        name = m.get("name")
    else:
        call_id = m.get("tool_call_id")
        if not isinstance(call_id, str):
            return Untranslatable(f"'{where}.tool_call_id' is required for tool messages", f"{where}.tool_call_id")
        name = names.get(call_id)
    if not isinstance(name, str) or not name:
        return Untranslatable(f"'{where}.tool_call_id' matches no tool call of a preceding assistant message",
                              f"{where}.tool_call_id")
    text = text_of(m.get("content"))
    try:
        value: Any = orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def call_id(seed: str, candidate: int, index: int, signature: Any = None) -> str:
    """A tool call id for call ``index`` of candidate ``candidate`` of an answer, carrying the call's thought
    signature (URL-safe base64, no padding, so the id stays within ``[A-Za-z0-9_-]``) when Gemini sent one."""
    base = f"call_{seed}{candidate:02x}{index:02x}"
    if not isinstance(signature, str) or not signature:
        return base
    raw = _unbase64(signature)
    if raw is None:
        return base
    return base + _SIGNATURE_MARK + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def thought_signature(tool_call_id: str) -> str | None:
    """The thought signature (standard base64) a ``call_id`` carries, else None."""
    if not tool_call_id.startswith("call_") or _SIGNATURE_MARK not in tool_call_id:
        return None
    encoded = tool_call_id.split(_SIGNATURE_MARK, 1)[1]
    raw = _unbase64(encoded)
    return base64.b64encode(raw).decode() if raw else None


def _unbase64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return None


def _declaration(tool: dict[str, Any], where: str) -> dict[str, Any] | Untranslatable:
    fn = tool.get("function")
    if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return Untranslatable("only function tools with a name are supported by this model's provider", where)
    declaration: dict[str, Any] = {"name": fn["name"]}
    if isinstance(fn.get("description"), str) and fn["description"]:
        declaration["description"] = fn["description"]
    parameters = fn.get("parameters")
    if isinstance(parameters, dict) and parameters:
        schema = gemini_schema(parameters, f"{where}.function.parameters")
        if isinstance(schema, Untranslatable):
            return schema
        # Google refuses an OBJECT without properties: a function without parameters declares none.
        if schema.get("type") != "OBJECT" or schema.get("properties"):
            declaration["parameters"] = schema
    return declaration


def _function_calling(choice: Any) -> dict[str, Any] | Untranslatable | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return {"mode": _TOOL_CHOICES[choice]}
    fn = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"mode": "ANY", "allowedFunctionNames": [fn["name"]]}
    return Untranslatable("'tool_choice' must be 'auto', 'required', 'none' or a function", "tool_choice")


def output_limit(payload: dict[str, Any], max_output_tokens: int) -> int | None:
    """``maxOutputTokens``: the client's bound capped at the deployment's, else the deployment's (None: neither)."""
    asked = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if max_output_tokens > 0:
        return min(asked, max_output_tokens) if isinstance(asked, int) else max_output_tokens
    return asked if isinstance(asked, int) else None


def _generation_config(payload: dict[str, Any], max_output_tokens: int) -> dict[str, Any] | Untranslatable:
    config: dict[str, Any] = {}
    limit = output_limit(payload, max_output_tokens)
    if limit is not None:
        config["maxOutputTokens"] = limit
    for hub, google in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                        ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if payload.get(hub) is not None:
            config[google] = payload[hub]
    stop = payload.get("stop")
    stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if s]  # Google refuses empty ones
    if stops:
        config["stopSequences"] = stops
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        config["candidateCount"] = n
    fmt = payload.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict) and schema:
            converted = gemini_schema(schema, "response_format.json_schema.schema", ordered=True)
            if isinstance(converted, Untranslatable):
                return converted
            # An object without properties constrains nothing JSON mode does not (and Google refuses it).
            if converted.get("type") != "OBJECT" or converted.get("properties"):
                config["responseSchema"] = converted
    effort = payload.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            return Untranslatable(f"'reasoning_effort' must be one of {', '.join(THINKING_BUDGETS)}",
                                  "reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    return config


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


# --- answers -----------------------------------------------------------------------------------------------------

def openai_usage(meta: Any) -> dict[str, Any]:
    """The hub usage of Google's ``usageMetadata`` (reasoning in the completion, cache reads in the prompt)."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    completion = count(meta.get("candidatesTokenCount")) + thoughts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": count(meta.get("cachedContentTokenCount"))},
            "completion_tokens_details": {"reasoning_tokens": thoughts}}


def blocked(response: dict[str, Any]) -> Blocked | None:
    """Whether Google refused the prompt (a ``blockReason``, or feedback and no candidates at all)."""
    if response.get("candidates"):
        return None
    feedback = response.get("promptFeedback")
    if not isinstance(feedback, dict):
        return None
    reason = feedback.get("blockReason") or "OTHER"
    return Blocked(str(reason), str(feedback.get("blockReasonMessage") or ""))


def _candidate_index(candidate: dict[str, Any]) -> int:
    # proto3 JSON leaves zero values out: Vertex's first candidate has no "index".
    index = candidate.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else 0


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _tool_call(part: dict[str, Any], seed: str, candidate: int, index: int) -> dict[str, Any]:
    call = part["functionCall"] if isinstance(part.get("functionCall"), dict) else {}
    args = call.get("args")
    return {"id": call_id(seed, candidate, index, part.get("thoughtSignature")), "type": "function",
            "function": {"name": str(call.get("name", "")),
                         "arguments": orjson.dumps(args if isinstance(args, dict) else {}).decode()}}


def _finish(reason: Any, called: bool) -> str:
    mapped = FINISH_REASONS.get(str(reason), "stop")
    return "tool_calls" if called and mapped == "stop" else mapped


def completion_id(response: dict[str, Any], seed: str) -> str:
    response_id = response.get("responseId")
    return f"chatcmpl-{response_id if isinstance(response_id, str) and response_id else seed}"


def openai_completion(response: dict[str, Any], created: int, model: str, call_seed: str) -> dict[str, Any] | Blocked:
    """An OpenAI ``chat.completion`` for a GenerateContentResponse, or ``Blocked`` when the prompt was refused.
    ``call_seed`` (a few hex digits the caller picks per answer) makes the tool call ids."""
    refused = blocked(response)
    if refused is not None:
        return refused
    choices = []
    for position, candidate in enumerate(c for c in response.get("candidates") or [] if isinstance(c, dict)):
        index = _candidate_index(candidate) or position
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in _parts(candidate):
            if "functionCall" in part:
                calls.append(_tool_call(part, call_seed, index, len(calls)))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                                   "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": index, "message": message, "logprobs": None,
                        "finish_reason": _finish(candidate.get("finishReason"), bool(calls))})
    if not choices:
        choices.append({"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None, "finish_reason": "stop"})
    return {"id": completion_id(response, call_seed), "object": "chat.completion", "created": created,
            "model": str(response.get("modelVersion") or model), "system_fingerprint": None,
            "choices": choices, "usage": openai_usage(response.get("usageMetadata"))}


def stream_error(chunk: dict[str, Any]) -> StreamError | None:
    """An ``{"error": {"code", "message", "status"}}`` object sent inside a stream, else None."""
    error = chunk.get("error")
    if not isinstance(error, dict):
        return None
    return StreamError(str(error.get("status") or error.get("code") or "UNKNOWN"), str(error.get("message", "")))


@dataclass(slots=True)
class GeminiChunkTranslator:
    """Streamed GenerateContentResponse chunks in, OpenAI chunk payloads out. One per stream; not shared between
    tasks. ``candidates`` is how many the request asked for: the stream is ``finished`` once each has its
    ``finishReason`` (the chunk that carries the last one also carries the call's final usage)."""

    created: int
    model: str
    call_seed: str
    candidates: int = 1
    finished: bool = False
    _id: str = ""
    _usage: dict[str, Any] | None = None
    _started: set[int] = field(default_factory=set)
    _calls: dict[int, int] = field(default_factory=dict)  # candidate index → tool calls so far
    _done: set[int] = field(default_factory=set)

    def feed(self, chunk: dict[str, Any]) -> list[bytes] | Blocked | StreamError:
        """The OpenAI chunks of one Google chunk (possibly none)."""
        error = stream_error(chunk)
        if error is not None:
            return error
        if not self._id:
            self._id = completion_id(chunk, self.call_seed)
            self.model = str(chunk.get("modelVersion") or self.model)
            refused = blocked(chunk)
            if refused is not None:
                return refused
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = chunk["usageMetadata"]  # cumulative: the latest replaces the earlier ones
        out: list[bytes] = []
        for candidate in chunk.get("candidates") or []:
            if isinstance(candidate, dict):
                out += self._candidate(candidate)
        if len(self._done) >= max(1, self.candidates):
            self.finished = True
            if self._usage is not None:
                out.append(orjson.dumps({**self._base(), "choices": [], "usage": openai_usage(self._usage)}))
        return out

    def _candidate(self, candidate: dict[str, Any]) -> list[bytes]:
        index = _candidate_index(candidate)
        out: list[bytes] = []
        if index not in self._started:
            self._started.add(index)
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        text = "".join(p["text"] for p in _parts(candidate)
                       if isinstance(p.get("text"), str) and not p.get("thought") and "functionCall" not in p)
        if text:
            out.append(self._chunk(index, {"content": text}))
        calls = []
        for part in _parts(candidate):
            if "functionCall" in part:
                n = self._calls.get(index, 0)
                self._calls[index] = n + 1
                calls.append({"index": n, **_tool_call(part, self.call_seed, index, n)})
        if calls:
            out.append(self._chunk(index, {"tool_calls": calls}))
        reason = candidate.get("finishReason")
        if reason and index not in self._done:
            self._done.add(index)
            out.append(self._chunk(index, {}, _finish(reason, index in self._calls)))
        return out

    def _base(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**self._base(), "choices": [{"index": index, "delta": delta, "logprobs": None,
                                                          "finish_reason": finish}]})


# --- embeddings --------------------------------------------------------------------------------------------------

def embedding_texts(payload: dict[str, Any]) -> list[str] | Untranslatable:
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return Untranslatable("this model's provider embeds text only: 'input' must be a string or strings, not "
                              "token ids", "input")
    return texts


def _dimensions(payload: dict[str, Any], default_dimensions: int) -> int | None:
    asked = payload.get("dimensions")
    return asked if isinstance(asked, int) and asked > 0 else (default_dimensions or None)


def gemini_embedding_bodies(payload: dict[str, Any], upstream_model: str,
                            default_dimensions: int) -> list[dict[str, Any]] | Untranslatable:
    """The Gemini API's ``batchEmbedContents`` bodies for the hub embeddings payload, ``GEMINI_EMBED_BATCH``
    texts each, in order."""
    texts = embedding_texts(payload)
    if isinstance(texts, Untranslatable):
        return texts
    dims = _dimensions(payload, default_dimensions)
    model = upstream_model if upstream_model.startswith("models/") else f"models/{upstream_model}"
    requests = [{"model": model, "content": {"parts": [{"text": t}]},
                 **({"outputDimensionality": dims} if dims else {})} for t in texts]
    return [{"requests": requests[i:i + GEMINI_EMBED_BATCH]} for i in range(0, len(requests), GEMINI_EMBED_BATCH)]


def vertex_embedding_bodies(payload: dict[str, Any], upstream_model: str,
                            default_dimensions: int) -> list[dict[str, Any]] | Untranslatable:
    """Vertex's ``:predict`` bodies for the hub embeddings payload, in order: ``VERTEX_EMBED_BATCH`` texts each,
    one for ``gemini-embedding-*`` models (Vertex takes one instance per request of them)."""
    texts = embedding_texts(payload)
    if isinstance(texts, Untranslatable):
        return texts
    dims = _dimensions(payload, default_dimensions)
    parameters = {"outputDimensionality": dims} if dims else {}
    step = 1 if upstream_model.startswith("gemini-embedding") else VERTEX_EMBED_BATCH
    return [{"instances": [{"content": t} for t in texts[i:i + step]], **({"parameters": parameters}
                                                                           if parameters else {})}
            for i in range(0, len(texts), step)]


def _values(embedding: Any) -> list[float] | None:
    values = embedding.get("values") if isinstance(embedding, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        return None
    return [float(v) for v in values]


def gemini_embedding_vectors(answer: Any, expected: int) -> list[list[float]] | None:
    """The vectors of a ``batchEmbedContents`` answer (``{embeddings: [{values}]}``); None if malformed."""
    items = answer.get("embeddings") if isinstance(answer, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        return None
    vectors = [_values(item) for item in items]
    return None if any(v is None for v in vectors) else [v for v in vectors if v is not None]


def vertex_embedding_vectors(answer: Any, expected: int) -> tuple[list[list[float]], int] | None:
    """The vectors of a ``:predict`` answer and the sum of their ``statistics.token_count``; None if malformed."""
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != expected:
        return None
    vectors, tokens = [], 0
    for prediction in predictions:
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        values = _values(embeddings)
        if values is None or not isinstance(embeddings, dict):
            return None
        vectors.append(values)
        statistics = embeddings.get("statistics")
        tokens += count(statistics.get("token_count")) if isinstance(statistics, dict) else 0
    return vectors, tokens


def estimated_embedding_tokens(texts: list[str]) -> int:
    """Gemini's batchEmbedContents reports no token counts: about four characters a token, rounded up per text."""
    return sum(-(-len(t) // 4) for t in texts)


def openai_embeddings(vectors: list[list[float]], prompt_tokens: int, model: str,
                      encoding_format: Any = None) -> dict[str, Any]:
    """OpenAI's embeddings answer; ``base64`` as OpenAI encodes it (little-endian float32)."""
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
             if encoding_format == "base64" else v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


# --- token counting ----------------------------------------------------------------------------------------------

def count_tokens_body(payload: dict[str, Any], upstream_model: str, vertex: bool) -> dict[str, Any] | Untranslatable:
    """The countTokens body for a hub chat payload: what ``gemini_request`` would send, without its generation
    settings (they do not change the prompt's count). The Gemini API counts the system instruction and tools only
    inside ``generateContentRequest``; Vertex takes them at the top level."""
    request = gemini_request(payload, 0, upstream_model)
    if isinstance(request, Untranslatable):
        return request
    counted = {k: v for k, v in request.items() if k in ("contents", "systemInstruction", "tools")}
    if vertex:
        return counted
    model = upstream_model if upstream_model.startswith("models/") else f"models/{upstream_model}"
    return {"generateContentRequest": {"model": model, **counted}}


def input_tokens(answer: Any) -> dict[str, int] | None:
    """``{"input_tokens": totalTokens}`` of a countTokens answer; None if it has no count."""
    total = answer.get("totalTokens", 0) if isinstance(answer, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    return {"input_tokens": total}
