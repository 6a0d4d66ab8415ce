"""Outbound translation: the gateway calling Google's Gemini models (the Gemini API and Vertex AI) for a hub request.

This module builds the requests; ``gemini_schema`` converts JSON schemas, ``gemini_to_hub`` translates the answers
back, ``gemini_embeddings`` holds embeddings and token counting.

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
from dataclasses import dataclass
from typing import Any

import orjson

from dataplane.translate.anthropic_common import Untranslatable, call_arguments, text_of
from dataplane.translate.gemini_schema import gemini_schema

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

_TOOL_CHOICES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


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
        arguments = call_arguments(fn)
        if arguments is None:
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
