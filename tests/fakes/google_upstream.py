"""Fakes of the Gemini API and of Vertex AI's generative models: real aiohttp applications on loopback speaking
Google's wire formats, for the gateway's ``gemini`` and ``vertex`` adapters.

``async with fake_gemini(api_key="AIza-fake") as fake:`` serves, on a free port (``fake.base_url`` is the origin,
in place of ``https://generativelanguage.googleapis.com``), under ``/v1beta`` and ``/v1``:

- ``POST /{version}/models/{model}:generateContent``: a GenerateContentResponse (``candidates``, ``usageMetadata``,
  ``modelVersion``, ``responseId``).
- ``POST /{version}/models/{model}:streamGenerateContent?alt=sse``: ``data: <chunk>\\r\\n\\r\\n`` frames, the text
  a few words per chunk, function calls in one chunk, ``finishReason`` on the last; every chunk carries the
  cumulative ``usageMetadata`` (the last one is the call's). Without ``alt=sse`` the chunks come as one streamed
  JSON array, as Google sends them.
- ``POST /{version}/models/{model}:countTokens``: ``{contents}`` or ``{generateContentRequest}`` (one of them) ->
  ``{totalTokens, promptTokensDetails, cachedContentTokenCount?}``.
- ``POST /{version}/models/{model}:embedContent`` -> ``{embedding: {values}}`` and ``:batchEmbedContents``
  (``requests[].model`` must be ``models/{model}``) -> ``{embeddings: [{values}]}``.

The key is ``x-goog-api-key`` (or ``?key=``): a wrong one is Google's 400 ``API_KEY_INVALID``, none at all 403.

``async with fake_vertex(project="p", location="europe-west4") as fake:`` serves the same generative endpoints under
``/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{model}:<method>`` (Vertex's
countTokens answers ``{totalTokens, totalBillableCharacters, promptTokensDetails}``; Vertex's stream carries
``usageMetadata`` on its last chunk only), text embeddings through ``:predict`` (``{instances: [{content,
task_type?, title?}], parameters: {outputDimensionality?, autoTruncate?}}`` -> ``{predictions: [{embeddings:
{values, statistics: {token_count, truncated}}}], metadata: {billableCharacterCount}}``) and ``:embedContent``
(what the SDK uses for ``gemini-embedding-*`` on Vertex). Requests need ``Authorization: Bearer <token>`` issued
by the fake's own OAuth endpoint, ``POST /token`` (``fake.token_uri``): the RFC 7523 JWT-bearer grant
google-auth's service-account credentials send, whose RS256 signature is checked with google-auth's ``crypt``
against the trusted keys, then ``iss``, ``aud`` (``https://oauth2.googleapis.com/token``, which google-auth always
puts there, or ``fake.token_uri``), ``iat``/``exp`` and ``scope``; the answer is ``{access_token, expires_in,
token_type: "Bearer"}``. An unknown token is 401 ``ACCESS_TOKEN_TYPE_UNSUPPORTED``, an expired one 401
``ACCESS_TOKEN_EXPIRED``, none 401 ``CREDENTIALS_MISSING``, a token without the cloud-platform scope 403, another
project 403 ``IAM_PERMISSION_DENIED``. The fake makes a throwaway RSA service account (``fake.service_account``,
written with ``token_uri`` pointing at the fake to ``fake.credentials_file``; ``fake.credentials()`` loads it as
``google.oauth2.service_account.Credentials``); ``new_service_account_key`` makes more, ``fake.trust`` accepts them.

Both validate bodies like Google: unknown fields, values of the wrong type or enum, lists where a field is not
repeated (400 ``Invalid JSON payload received. Unknown name "x" at 'generation_config': Cannot find field.``
with a ``BadRequest`` detail), snake_case or camelCase names alike (the SDK sends both); then roles, empty parts,
function call/response turn order and counts, function names, sampling ranges, mime types, thinking budgets and,
for ``gemini-3*`` models, the thought signatures of the current turn's function calls (400 with Google's
messages). An unknown model is 404 ``NOT_FOUND``.

Answers: a function call when function declarations are offered and the mode is ``ANY`` (limited to
``allowedFunctionNames``), or ``AUTO`` and the last user turn says "call" (the functions it names, else the
first; a turn answering with ``functionResponse`` gets text), with ``tool_args`` or arguments made from the
declaration's schema; JSON made from ``responseSchema``/``responseJsonSchema`` (``schema_example``) when
``responseMimeType`` is ``application/json`` (``json_reply`` overrides it); else ``reply``. ``maxOutputTokens``
bounds thoughts plus text (``MAX_TOKENS``; thoughts that use it all leave a candidate with no parts), stop
sequences cut the text, ``candidateCount`` repeats the candidate. Usage: ``promptTokenCount`` is
``prompt_tokens(body)``, ``candidatesTokenCount`` the output's ``text_tokens`` (``call_tokens`` per function
call), ``thoughtsTokenCount`` billed apart and included only in ``totalTokenCount``; zero counts are left out, as
proto3 JSON does.

Knobs (set before sending): ``reply``, ``json_reply``, ``tool_args``, ``thoughts_tokens`` (for thinking models,
bounded by ``thinkingBudget``; ``includeThoughts`` adds a thought part), ``cached_tokens`` (reported as
``cachedContentTokenCount``; added to the prompt when the request names ``cachedContent``), ``block_prompt``
(True or a blockReason: ``promptFeedback`` and usage, no candidates), ``safety_stop`` (finishReason ``SAFETY``
after ``safety_stop_words`` words; with none, no content), ``safety_category``, ``safety_ratings`` (on every
candidate; otherwise only on blocks and safety stops, as Gemini 2.x answers), ``finish_reason`` (forced),
``thought_signatures`` (None: only ``gemini-3*`` models sign, and require, them), ``words_per_chunk``,
``die_after_chunks`` (close the socket instead of that stream frame), ``fail_status``/``fail_times`` (429
``RESOURCE_EXHAUSTED``, on Gemini with QuotaFailure, Help and RetryInfo ``retry_delay_s`` details; 500
``INTERNAL``; 503 ``UNAVAILABLE``; ...), ``delay_s``, ``drop_connection``, ``models``/``embedding_models``; on
Vertex also ``token_lifetime_s`` and ``expire_tokens()``. ``requests`` records every API call as it arrives (path,
query, headers, JSON body), ``token_requests`` every grant (the form).

Helpers for tests: ``text_tokens``, ``call_tokens``, ``prompt_tokens``/``prompt_token_details`` (the fake's token
counts), ``billable_characters``, ``embedding_values``, ``schema_example``, ``word_pieces``, ``google_error``,
``new_service_account_key``/``ServiceAccountKey`` (``info(token_uri)``, ``write(path, token_uri)``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import re
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex, token_urlsafe
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from google.oauth2 import service_account as google_service_account

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GEMINI_MODELS = frozenset({"gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                           "gemini-2.5-pro", "gemini-3-pro-preview", "gemini-3-flash-preview"})
GEMINI_EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
VERTEX_MODELS = frozenset({"gemini-2.0-flash-001", "gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                           "gemini-2.5-pro", "gemini-3-pro-preview"})
VERTEX_EMBEDDING_MODELS = {"text-embedding-005": 768, "text-multilingual-embedding-002": 768,
                           "gemini-embedding-001": 3072}
MEDIA_TOKENS = 258
EMBEDDING_INPUT_TOKENS = 2048
HARM_CATEGORIES = ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT",
                   "HARM_CATEGORY_SEXUALLY_EXPLICIT")
SKIP_SIGNATURES = frozenset({"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"})
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_SIGN_IN = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
MISSING_CREDENTIALS = ("Request is missing required authentication credential. Expected OAuth 2 access token, login "
                       f"cookie or other valid authentication credential. {_SIGN_IN}")
INVALID_CREDENTIALS = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                       f"or other valid authentication credential. {_SIGN_IN}")
API_KEY_NOT_SUPPORTED = ("API keys are not supported by this API. Expected OAuth2 access token or other "
                         "authentication credentials that assert a principal. See "
                         "https://cloud.google.com/docs/authentication")
INVALID_API_KEY = "API key not valid. Please pass a valid API key."
UNREGISTERED_CALLER = ("Method doesn't allow unregistered callers (callers without established identity). Please use "
                       "API Key or other form of API consumer identity to call this API.")
_VERTEX_DOCS = "Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini"
_ALLOWED_MIME = ("text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,63}")


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


# --- the fake's deterministic numbers ----------------------------------------------------------------------------

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


def schema_example(schema: Any) -> Any:
    """The value the fake answers for a ``responseSchema`` (Gemini's OpenAPI subset, types in any case) or a
    ``responseJsonSchema``/``parametersJsonSchema`` (JSON Schema): the first ``enum`` value or ``anyOf`` branch;
    objects with every property (in ``propertyOrdering`` order when given); arrays of ``minItems`` (at least 1)
    items; strings ``"fake"`` (dates and date-times for those formats); integers and numbers their ``minimum`` or
    1 and 1.5; booleans true; null None."""
    if not isinstance(schema, dict):
        return None
    schema = _camel_keys(schema, structs=False)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_example(schema[key][0])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind or ("object" if "properties" in schema else "")).upper()
    if kind == "OBJECT":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        order = [k for k in schema.get("propertyOrdering") or [] if k in props]
        order += [k for k in props if k not in order]
        return {k: schema_example(props[k]) for k in order}
    if kind == "ARRAY":
        return [schema_example(schema.get("items")) for _ in range(max(1, int(schema.get("minItems") or 0)))]
    if kind == "STRING":
        return {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01"}.get(str(schema.get("format")), "fake")
    if kind == "INTEGER":
        return int(schema["minimum"]) if schema.get("minimum") is not None else 1
    if kind == "NUMBER":
        return float(schema["minimum"]) if schema.get("minimum") is not None else 1.5
    if kind == "BOOLEAN":
        return True
    return None


def word_pieces(text: str) -> list[str]:
    """The reply as the fake streams it, before grouping ``words_per_chunk`` to a chunk: words, spaces leading."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if text else []


# --- request validation: Google's proto JSON parsing -------------------------------------------------------------
# A field's kind: s string, i int32, l int64, f float, b bool, y bytes (base64), o Struct (any object), v Value
# (anything), E:<enum>, M:<message>, P:<message> (map<string, message>); "[]" marks a repeated field.

_COMMON: dict[str, dict[str, str]] = {
    "GenerateContentRequest": {"model": "s", "contents": "M:Content[]", "systemInstruction": "M:Content",
                               "tools": "M:Tool[]", "toolConfig": "M:ToolConfig",
                               "safetySettings": "M:SafetySetting[]", "generationConfig": "M:GenerationConfig",
                               "cachedContent": "s"},
    "Content": {"role": "s", "parts": "M:Part[]"},
    "Part": {"text": "s", "inlineData": "M:Blob", "functionCall": "M:FunctionCall",
             "functionResponse": "M:FunctionResponse", "fileData": "M:FileData", "executableCode": "M:ExecutableCode",
             "codeExecutionResult": "M:CodeExecutionResult", "thought": "b", "thoughtSignature": "y",
             "videoMetadata": "M:VideoMetadata", "mediaResolution": "o"},
    "Blob": {"mimeType": "s", "data": "y", "displayName": "s"},
    "FileData": {"mimeType": "s", "fileUri": "s", "displayName": "s"},
    "FunctionCall": {"id": "s", "name": "s", "args": "o"},
    "FunctionResponse": {"id": "s", "name": "s", "response": "o", "willContinue": "b", "scheduling": "E:Scheduling",
                         "parts": "M:FunctionResponsePart[]"},
    "FunctionResponsePart": {"inlineData": "M:Blob"},
    "ExecutableCode": {"language": "E:Language", "code": "s"},
    "CodeExecutionResult": {"outcome": "E:Outcome", "output": "s"},
    "VideoMetadata": {"startOffset": "s", "endOffset": "s", "fps": "f"},
    "Tool": {"functionDeclarations": "M:FunctionDeclaration[]", "googleSearchRetrieval": "o", "codeExecution": "o",
             "googleSearch": "o", "urlContext": "o", "computerUse": "o", "googleMaps": "o"},
    "FunctionDeclaration": {"name": "s", "description": "s", "parameters": "M:Schema", "parametersJsonSchema": "v",
                            "response": "M:Schema", "responseJsonSchema": "v", "behavior": "E:Behavior"},
    "Schema": {"type": "E:Type", "format": "s", "title": "s", "description": "s", "nullable": "b", "enum": "s[]",
               "maxItems": "l", "minItems": "l", "properties": "P:Schema", "required": "s[]", "minProperties": "l",
               "maxProperties": "l", "minLength": "l", "maxLength": "l", "pattern": "s", "example": "v",
               "anyOf": "M:Schema[]", "propertyOrdering": "s[]", "default": "v", "items": "M:Schema",
               "minimum": "f", "maximum": "f"},
    "ToolConfig": {"functionCallingConfig": "M:FunctionCallingConfig", "retrievalConfig": "o"},
    "FunctionCallingConfig": {"mode": "E:Mode", "allowedFunctionNames": "s[]"},
    "SafetySetting": {"category": "E:HarmCategory", "threshold": "E:HarmBlockThreshold"},
    "GenerationConfig": {"stopSequences": "s[]", "responseMimeType": "s", "responseSchema": "M:Schema",
                         "responseJsonSchema": "v", "responseModalities": "E:Modality[]", "candidateCount": "i",
                         "maxOutputTokens": "i", "temperature": "f", "topP": "f", "topK": "i", "seed": "i",
                         "presencePenalty": "f", "frequencyPenalty": "f", "responseLogprobs": "b", "logprobs": "i",
                         "speechConfig": "o", "thinkingConfig": "M:ThinkingConfig", "imageConfig": "o",
                         "mediaResolution": "E:MediaResolution"},
    "ThinkingConfig": {"includeThoughts": "b", "thinkingBudget": "i", "thinkingLevel": "E:ThinkingLevel"},
}
_GEMINI_ONLY: dict[str, dict[str, str]] = {
    "GenerateContentRequest": {"serviceTier": "s", "store": "b"},
    "Tool": {"fileSearch": "o"},
    "GenerationConfig": {"enableEnhancedCivicAnswers": "b"},
    "CountTokensRequest": {"contents": "M:Content[]", "generateContentRequest": "M:GenerateContentRequest"},
    "EmbedContentRequest": {"model": "s", "content": "M:Content", "taskType": "E:TaskType", "title": "s",
                            "outputDimensionality": "i"},
    "BatchEmbedContentsRequest": {"requests": "M:EmbedContentRequest[]"},
}
_VERTEX_ONLY: dict[str, dict[str, str]] = {
    "GenerateContentRequest": {"labels": "o", "modelArmorConfig": "o"},
    "Tool": {"retrieval": "o", "enterpriseWebSearch": "o"},
    "SafetySetting": {"method": "E:HarmBlockMethod"},
    "GenerationConfig": {"routingConfig": "o", "audioTimestamp": "b", "modelSelectionConfig": "o"},
    "Schema": {"ref": "s", "defs": "P:Schema", "additionalProperties": "v"},
    "CountTokensRequest": {"model": "s", "instances": "v[]", "contents": "M:Content[]",
                           "systemInstruction": "M:Content", "tools": "M:Tool[]",
                           "generationConfig": "M:GenerationConfig"},
    "EmbedContentRequest": {"content": "M:Content", "embedContentConfig": "M:EmbedContentConfig"},
    "EmbedContentConfig": {"taskType": "E:TaskType", "title": "s", "outputDimensionality": "i", "autoTruncate": "b",
                           "documentOcr": "b", "audioTrackExtraction": "b"},
    "PredictRequest": {"instances": "v[]", "parameters": "v"},
}
_ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Mode": ("FunctionCallingConfig.Mode", ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")),
    "Type": ("Type", ("TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL")),
    "HarmCategory": ("HarmCategory", ("HARM_CATEGORY_UNSPECIFIED", *HARM_CATEGORIES,
                                      "HARM_CATEGORY_CIVIC_INTEGRITY")),
    "HarmBlockThreshold": ("SafetySetting.HarmBlockThreshold", (
        "HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
        "BLOCK_NONE", "OFF")),
    "HarmBlockMethod": ("SafetySetting.HarmBlockMethod", ("HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY",
                                                          "PROBABILITY")),
    "TaskType": ("TaskType", ("TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
                              "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION",
                              "CODE_RETRIEVAL_QUERY")),
    "ThinkingLevel": ("ThinkingConfig.ThinkingLevel", ("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM",
                                                       "HIGH")),
    "Modality": ("GenerationConfig.Modality", ("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO")),
    "MediaResolution": ("GenerationConfig.MediaResolution", ("MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW",
                                                             "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH")),
    "Behavior": ("FunctionDeclaration.Behavior", ("UNSPECIFIED", "BLOCKING", "NON_BLOCKING")),
    "Scheduling": ("FunctionResponse.Scheduling", ("SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT")),
    "Language": ("ExecutableCode.Language", ("LANGUAGE_UNSPECIFIED", "PYTHON")),
    "Outcome": ("CodeExecutionResult.Outcome", ("OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED",
                                                "OUTCOME_DEADLINE_EXCEEDED")),
}
_PART_DATA = ("text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
              "codeExecutionResult")


def _messages(vertex: bool) -> dict[str, dict[str, str]]:
    extra = _VERTEX_ONLY if vertex else _GEMINI_ONLY
    return {name: {**_COMMON.get(name, {}), **extra.get(name, {})} for name in {*_COMMON, *extra}}


_GEMINI_MESSAGES = _messages(vertex=False)
_VERTEX_MESSAGES = _messages(vertex=True)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_STRUCT_KEYS = frozenset({"args", "response", "example", "default", "labels", "parametersJsonSchema",
                          "responseJsonSchema", "properties", "defs"})


def _camel_keys(value: Any, structs: bool = True) -> Any:
    """``value`` with snake_case keys in camelCase, except inside free-form objects (call arguments, responses,
    JSON schemas) and for the names of schema properties."""
    if isinstance(value, list):
        return [_camel_keys(v, structs) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        name = _camel(key)
        if name == "properties" or name == "defs":
            out[name] = ({k: _camel_keys(v, structs) for k, v in item.items()} if isinstance(item, dict) else item)
        elif name in _STRUCT_KEYS and structs:
            out[name] = item
        else:
            out[name] = _camel_keys(item, structs)
    return out


def _render(value: Any) -> str:
    return orjson.dumps(value).decode()


class _Parser:
    """Google's JSON-to-proto parsing of one body: the violations it finds (field, description), and the body
    with camelCase names and nulls dropped."""

    def __init__(self, vertex: bool, version: str) -> None:
        self.messages = _VERTEX_MESSAGES if vertex else _GEMINI_MESSAGES
        self.package = (f"google.cloud.aiplatform.{version}" if vertex
                        else f"google.ai.generativelanguage.{version}")
        self.violations: list[tuple[str, str]] = []

    def root(self, value: Any, message: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.violations.append(("", 'Invalid JSON payload received. Unknown name "": Root element must be a '
                                        "message."))
            return {}
        return self.message(value, message, "")

    def message(self, value: Any, name: str, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self._bad(path, f"type.googleapis.com/{self.package}.{name}", value)
            return {}
        fields = self.messages[name]
        out: dict[str, Any] = {}
        for key, item in value.items():
            camel = key if key in fields else _camel(key)
            where = f" at '{path}'" if path else ""
            if camel not in fields:
                self.violations.append((path, f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot '
                                              "find field."))
                continue
            if item is None:
                continue
            spec = fields[camel]
            kind, repeated = spec.removesuffix("[]"), spec.endswith("[]")
            sub = f"{path}.{_snake(camel)}" if path else _snake(camel)
            if repeated:
                if isinstance(item, list):
                    out[camel] = [self.single(v, kind, f"{sub}[{i}]") for i, v in enumerate(item)]
                else:
                    out[camel] = [self.single(item, kind, sub)]
            elif isinstance(item, list) and kind != "v":
                self.violations.append((path, f'Invalid JSON payload received. Unknown name "{key}"{where}: Proto '
                                              "field is not repeating, cannot start list."))
            else:
                out[camel] = self.single(item, kind, sub)
        return out

    def single(self, value: Any, kind: str, path: str) -> Any:
        if kind.startswith("M:"):
            return self.message(value, kind[2:], path)
        if kind.startswith("P:"):
            if not isinstance(value, dict):
                self._bad(path, f"type.googleapis.com/{self.package}.{kind[2:]}", value)
                return {}
            return {k: self.message(v, kind[2:], f"{path}[{i}].value") for i, (k, v) in enumerate(value.items())}
        if kind.startswith("E:"):
            return self._enum(value, kind[2:], path)
        checks: dict[str, tuple[str, Any]] = {
            "s": ("TYPE_STRING", lambda v: v if isinstance(v, str) else None),
            "i": ("TYPE_INT32", _as_int), "l": ("TYPE_INT64", _as_int),
            "f": ("TYPE_FLOAT", lambda v: float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                  else None),
            "b": ("TYPE_BOOL", lambda v: v if isinstance(v, bool) else None),
            "o": ("type.googleapis.com/google.protobuf.Struct", lambda v: v if isinstance(v, dict) else None),
        }
        if kind == "v":
            return value
        if kind == "y":
            if isinstance(value, str) and _is_base64(value):
                return value
            self.violations.append((path, f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for "
                                          f"{_render(value)}"))
            return ""
        type_name, convert = checks[kind]
        converted = convert(value)
        if converted is None:
            self._bad(path, type_name, value)
        return converted

    def _enum(self, value: Any, name: str, path: str) -> Any:
        full, values = _ENUMS[name]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values):
            return values[value]
        if isinstance(value, str) and (value in values or (name == "Type" and value.upper() in values)):
            return value.upper() if name == "Type" else value
        self._bad(path, f"type.googleapis.com/{self.package}.{full}", value)
        return values[0]

    def _bad(self, path: str, type_name: str, value: Any) -> None:
        self.violations.append((path, f"Invalid value at '{path}' ({type_name}), {_render(value)}"))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _unbase64(value: str) -> bytes | None:
    """The bytes of a proto JSON ``bytes`` value (standard or URL-safe base64, padded or not), or None."""
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_base64(value: str) -> bool:
    return _unbase64(value) is not None


# --- errors ------------------------------------------------------------------------------------------------------

def _json(data: Any, status: int = 200) -> web.Response:
    """Google's JSON answers: indented by two spaces, ``application/json; charset=UTF-8``."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n", status=status,
                        headers={"Content-Type": "application/json; charset=UTF-8",
                                 "Vary": "Origin, X-Origin, Referer"})


def google_error(code: int, message: str, details: list[dict[str, Any]] | None = None,
                 status: str | None = None) -> web.Response:
    """Google's error envelope ``{"error": {"code", "message", "status", "details"?}}``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status or _STATUS.get(code, "UNKNOWN")}
    if details:
        error["details"] = details
    return _json({"error": error}, status=code)


def _violations_error(violations: list[tuple[str, str]]) -> web.Response:
    return google_error(400, "\n".join(d for _, d in violations), [{"@type": _BAD_REQUEST, "fieldViolations": [
        {"field": f, "description": d} if f else {"description": d} for f, d in violations]}])


def _error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {"@type": _ERROR_INFO, "reason": reason, "domain": domain, "metadata": metadata}


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- what the fake answers ---------------------------------------------------------------------------------------

@dataclass
class _Candidate:
    thought: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "STOP"
    tokens: int = 0
    ratings: list[dict[str, Any]] | None = None


@dataclass
class _Plan:
    prompt: int
    details: dict[str, int]
    cached: int
    blocked: str = ""
    thoughts: int = 0
    candidates: list[_Candidate] = field(default_factory=list)


@dataclass
class _Upstream:
    """What the Gemini and the Vertex fakes share: knobs, records, validation and answers."""

    vertex: ClassVar[bool] = False
    reply: str = "Hello from the fake Gemini, word by word."
    json_reply: Any = None
    tool_args: dict[str, Any] | None = None
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    block_prompt: bool | str = False
    safety_stop: bool = False
    safety_stop_words: int = 0
    safety_category: str = "HARM_CATEGORY_DANGEROUS_CONTENT"
    safety_ratings: bool = False
    finish_reason: str = ""
    thought_signatures: bool | None = None
    words_per_chunk: int = 2
    fail_status: int = 0
    fail_times: int = 0
    retry_delay_s: int = 17
    delay_s: float = 0.0
    drop_connection: bool = False
    die_after_chunks: int = -1
    models: frozenset[str] = GEMINI_MODELS
    embedding_models: dict[str, int] = field(default_factory=lambda: dict(GEMINI_EMBEDDING_MODELS))
    requests: list[Received] = field(default_factory=list)
    signatures: set[bytes] = field(default_factory=set)
    base_url: str = ""
    served: int = 0

    # -- the shared steps of every call -----------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[Any, bool]:
        """The body (parsed JSON, or None) and whether it parsed; records the request."""
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw.strip() else {}
            ok = True
        except orjson.JSONDecodeError:
            parsed, ok = None, False
        self.requests.append(Received(request.path, dict(request.query), dict(request.headers),
                                      parsed if isinstance(parsed, dict) else {}))
        return parsed, ok

    def _parse(self, raw: Any, ok: bool, message: str, version: str) -> tuple[dict[str, Any], web.Response | None]:
        if not ok:
            return {}, _violations_error([("", "Invalid JSON payload received. Unexpected token.")])
        parser = _Parser(self.vertex, version)
        body = parser.root(raw, message)
        return body, (_violations_error(parser.violations) if parser.violations else None)

    async def _knobs(self, request: web.Request) -> web.StreamResponse | None:
        """``delay_s``, ``drop_connection`` and ``fail_status``/``fail_times``, after the request passed the checks."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            return self._failure(self.fail_status)
        return None

    def _failure(self, code: int) -> web.Response:
        if code == 429:
            return google_error(429, "Resource exhausted. Please try again later. Please refer to "
                                     "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more "
                                     "details.")
        messages = {500: "Internal error encountered.", 503: "The service is currently unavailable.",
                    504: "Deadline expired before operation could complete."}
        return google_error(code, messages.get(code, "Request failed."))

    def _signing(self, model: str) -> bool:
        return self.thought_signatures if self.thought_signatures is not None else model.startswith("gemini-3")

    # -- checks beyond parsing --------------------------------------------------------------------------------

    def _check_generate(self, body: dict[str, Any], model: str, where: str, signatures: bool = True) -> str | None:
        """Why Google would refuse a parsed GenerateContentRequest (``where`` names it in Gemini's messages)."""
        problems: list[str] = []

        def problem(path: str, message: str, vertex_message: str | None = None) -> None:
            problems.append((vertex_message or message) if self.vertex else f"* {where}.{path}: {message}\n")

        contents = body.get("contents") or []
        if not contents:
            problem("contents", "contents is not specified", "Unable to submit request because it must include at "
                    f"least one parts field, which describes the prompt input. {_VERTEX_DOCS}")
        prev_role, prev_calls = "", 0
        for i, content in enumerate(contents):
            role = content.get("role") or "user"
            if role not in ("user", "model"):
                return "Please use a valid role: user, model."
            parts = content.get("parts") or []
            if not parts:
                problem(f"contents[{i}].parts", "contents.parts must not be empty.", "Unable to submit request "
                        f"because it must include at least one parts field, which describes the prompt input. "
                        f"{_VERTEX_DOCS}")
            for j, part in enumerate(parts):
                if not any(part.get(k) for k in _PART_DATA):
                    problem(f"contents[{i}].parts[{j}].data", "required oneof field 'data' must have one initialized "
                            "field", "Unable to submit request because it has an empty text parameter. Add a value "
                            f"to the parameter and try again. {_VERTEX_DOCS}")
                elif sum(1 for k in _PART_DATA if k in part) > 1:
                    second = [k for k in _PART_DATA if k in part][1]
                    problem(f"contents[{i}].parts[{j}].data", f"oneof field 'data' is already set. Cannot set "
                            f"'{second}'")
            calls = sum(1 for p in parts if "functionCall" in p)
            responses = sum(1 for p in parts if "functionResponse" in p)
            if calls and (role != "model" or prev_role != "user"):
                return ("Please ensure that function call turn comes immediately after a user turn or after a "
                        "function response turn.")
            if responses:
                if not prev_calls:
                    return "Please ensure that function response turn comes immediately after a function call turn."
                if responses != prev_calls:
                    return ("Please ensure that the number of function response parts is equal to the number of "
                            "function call parts of the function call turn.")
            prev_role, prev_calls = role, calls
        for t, tool in enumerate(body.get("tools") or []):
            for d, decl in enumerate(tool.get("functionDeclarations") or []):
                path = f"tools[{t}].function_declarations[{d}]"
                if not _FUNCTION_NAME.fullmatch(str(decl.get("name", ""))):
                    problem(f"{path}.name", "Invalid function name. Must start with a letter or an underscore. Must "
                            "be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum "
                            "length of 64.")
                params = decl.get("parameters")
                if params and "parametersJsonSchema" in decl:
                    problem(f"{path}.parameters", "parameters and parameters_json_schema cannot both be set")
                if params and params.get("type") == "OBJECT" and not params.get("properties"):
                    problem(f"{path}.parameters.properties", "should be non-empty for OBJECT type")
        problems += self._check_generation_config(body.get("generationConfig") or {}, model, where)
        if problems:
            return "".join(problems) if not self.vertex else problems[0]
        return self._check_signatures(contents, model) if signatures else None

    def _check_generation_config(self, gen: dict[str, Any], model: str, where: str) -> list[str]:
        out: list[str] = []

        def problem(path: str, message: str, vertex_message: str | None = None) -> None:
            out.append((vertex_message or message) if self.vertex
                       else f"* {where}.generation_config.{path}: {message}\n")

        def ranged(name: str, low: float, high: float, value: Any) -> None:
            if value is not None and not low <= value <= high:
                problem(_snake(name), f"{_snake(name)} must be in the range [{low}, {high}]",
                        f"Unable to submit request because it has a {name} value of {value} but the supported range "
                        f"is from {low:g} (inclusive) to {high + 0.0001:g} (exclusive). Update the value and try "
                        "again.")

        ranged("temperature", 0.0, 2.0, gen.get("temperature"))
        ranged("topP", 0.0, 1.0, gen.get("topP"))
        count = gen.get("candidateCount")
        if count is not None and not 1 <= count <= 8:
            problem("candidate_count", "candidate_count must be in the range [1, 8]")
        limit = 8192 if model.startswith("gemini-2.0") else 65536
        max_out = gen.get("maxOutputTokens")
        if max_out is not None and not 0 <= max_out <= limit:
            problem("max_output_tokens", f"max_output_tokens must be in the range [1, {limit}]",
                    f"Unable to submit request because it has a maxOutputTokens value of {max_out} but the supported "
                    f"range is from 1 (inclusive) to {limit + 1} (exclusive). Update the value and try again.")
        if len(gen.get("stopSequences") or []) > 5:
            problem("stop_sequences", "the number of stop_sequences must be at most 5")
        mime = gen.get("responseMimeType")
        if mime and mime not in _ALLOWED_MIME:
            problem("response_mime_type", "allowed mimetypes are `text/plain`, `application/json`, "
                    "`application/xml`, `application/yaml` and `text/x.enum`.")
        if "responseSchema" in gen and "responseJsonSchema" in gen:
            problem("response_schema", "response_schema and response_json_schema cannot both be set")
        if ("responseSchema" in gen or "responseJsonSchema" in gen) and mime not in ("application/json",
                                                                                     "text/x.enum"):
            problem("response_mime_type", "response_mime_type must be application/json or text/x.enum when a "
                    "response schema is set")
        budget = (gen.get("thinkingConfig") or {}).get("thinkingBudget")
        if budget is not None and model.startswith(("gemini-2.5", "gemini-3")):
            low, high = (128, 32768) if "pro" in model else (0, 24576)
            if budget == 0 and low:
                out.append("Budget 0 is invalid. This model only works in thinking mode.")
            elif budget != -1 and not low <= budget <= high:
                out.append(f"The thinking budget {budget} is invalid. Please choose a value between {low} and "
                           f"{high}.")
        return out

    def _check_signatures(self, contents: list[dict[str, Any]], model: str) -> str | None:
        """Gemini 3's rule: in the current turn (after the last user text), every model turn's first function call
        carries a thought signature the model issued."""
        if not self._signing(model):
            return None
        start = max((i for i, c in enumerate(contents) if (c.get("role") or "user") == "user"
                     and any("functionResponse" not in p for p in c.get("parts") or [])), default=-1)
        for i in range(start + 1, len(contents)):
            calls = [p for p in contents[i].get("parts") or [] if "functionCall" in p]
            if not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            if not signature:
                name = calls[0]["functionCall"].get("name")
                return ("Function call is missing a thought_signature in functionCall parts. This is required for "
                        "tools to work correctly, and missing thought_signature may lead to degraded model "
                        f"performance. Additional data, function call `default_api:{name}` , position {i + 1}. "
                        "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
            if signature not in SKIP_SIGNATURES and _unbase64(signature) not in self.signatures:
                return "Corrupted thought signature."
        return None

    # -- generation -------------------------------------------------------------------------------------------

    def _plan(self, body: dict[str, Any], model: str, response_id: str) -> _Plan:
        details = prompt_token_details(body)
        prompt = sum(details.values())
        cached = min(self.cached_tokens, prompt)
        if body.get("cachedContent"):
            prompt += self.cached_tokens
            details["TEXT"] = details.get("TEXT", 0) + self.cached_tokens
            cached = self.cached_tokens
        plan = _Plan(prompt=prompt, details=details, cached=cached)
        if self.block_prompt:
            plan.blocked = self.block_prompt if isinstance(self.block_prompt, str) else "SAFETY"
            return plan
        gen = body.get("generationConfig") or {}
        thinking = gen.get("thinkingConfig") or {}
        budget = thinking.get("thinkingBudget")
        thoughts = self.thoughts_tokens if not model.startswith("gemini-2.0") and budget != 0 else 0
        if budget is not None and budget > 0:
            thoughts = min(thoughts, budget)
        room: int | None = gen.get("maxOutputTokens") or None
        if room is not None:
            thoughts = min(thoughts, room)
            room -= thoughts
        plan.thoughts = thoughts
        calls = self._calls(body)
        text = "" if calls else self._text(gen)
        signing = self._signing(model) or (bool(thoughts) and bool(calls))
        for index in range(gen.get("candidateCount") or 1):
            cand = _Candidate(thought=("**Thinking it through**\n\nWorking out the answer to the request."
                                       if thinking.get("includeThoughts") and thoughts else ""))
            if calls:
                cand.parts = [{"functionCall": call} for call in calls]
                cand.tokens = sum(_part_tokens(p)[1] for p in cand.parts)
                if room is not None and cand.tokens > room:
                    cand.parts, cand.tokens, cand.finish = [], 0, "MAX_TOKENS"
            else:
                kept = text
                if room is not None and text_tokens(kept) > room:
                    words = kept.split(" ")
                    while words and text_tokens(" ".join(words)) > room:
                        words.pop()
                    kept, cand.finish = " ".join(words), "MAX_TOKENS"
                if self.safety_stop:
                    kept, cand.finish = " ".join(kept.split(" ")[: self.safety_stop_words]), "SAFETY"
                    cand.ratings = self._ratings(blocked=True)
                cand.parts = [{"text": kept}] if kept else []
                cand.tokens = text_tokens(kept)
            if signing and cand.parts:
                signature = hashlib.sha256(f"{response_id}/{index}".encode()).digest()
                self.signatures.add(signature)
                cand.parts[0 if calls else -1]["thoughtSignature"] = base64.b64encode(signature).decode()
            if self.finish_reason:
                cand.finish = self.finish_reason
            if self.safety_ratings and cand.ratings is None:
                cand.ratings = self._ratings(blocked=False)
            plan.candidates.append(cand)
        return plan

    def _calls(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []]
        config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = config.get("mode") or "AUTO"
        if not declarations or mode == "NONE":
            return []
        last = (body.get("contents") or [{}])[-1]
        parts = last.get("parts") or []
        said = " ".join(str(p.get("text", "")) for p in parts)
        answered = any("functionResponse" in p for p in parts)
        if mode != "ANY" and (answered or not re.search(r"\bcall\b", said, re.IGNORECASE)):
            return []
        allowed = config.get("allowedFunctionNames") or []
        pool = [d for d in declarations if not allowed or d.get("name") in allowed] or declarations
        named = [d for d in pool if d.get("name") and re.search(rf"\b{re.escape(d['name'])}\b", said)] or pool[:1]
        return [{"name": d["name"], "args": self.tool_args if self.tool_args is not None
                 else schema_example(d.get("parameters") or d.get("parametersJsonSchema")) or {}} for d in named]

    def _text(self, gen: dict[str, Any]) -> str:
        mime = gen.get("responseMimeType") or "text/plain"
        schema = gen.get("responseSchema") or gen.get("responseJsonSchema")
        if mime == "application/json":
            value = self.json_reply if self.json_reply is not None else (
                schema_example(schema) if schema else {"reply": self.reply})
            text = orjson.dumps(value).decode()
        elif mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
            text = str(schema["enum"][0])
        else:
            text = self.reply
        cuts = [text.find(s) for s in gen.get("stopSequences") or [] if s and s in text]
        return text[: min(cuts)] if cuts else text

    def _ratings(self, blocked: bool) -> list[dict[str, Any]]:
        ratings: list[dict[str, Any]] = []
        for category in HARM_CATEGORIES:
            hit = blocked and category == self.safety_category
            rating: dict[str, Any] = {"category": category, "probability": "HIGH" if hit else "NEGLIGIBLE"}
            if self.vertex:
                rating.update(probabilityScore=0.93 if hit else 0.04,
                              severity="HARM_SEVERITY_HIGH" if hit else "HARM_SEVERITY_NEGLIGIBLE",
                              severityScore=0.88 if hit else 0.02)
            if hit:
                rating["blocked"] = True
            ratings.append(rating)
        return ratings

    def _usage(self, plan: _Plan, candidates_tokens: int | None = None) -> dict[str, Any]:
        output = sum(c.tokens for c in plan.candidates) if candidates_tokens is None else candidates_tokens
        usage: dict[str, Any] = {"promptTokenCount": plan.prompt, "candidatesTokenCount": output,
                                 "totalTokenCount": plan.prompt + output + plan.thoughts,
                                 "cachedContentTokenCount": plan.cached,
                                 "promptTokensDetails": [{"modality": m, "tokenCount": n}
                                                         for m, n in plan.details.items()]}
        if plan.cached:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": plan.cached}]
        if self.vertex and output:
            usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": output}]
        usage["thoughtsTokenCount"] = plan.thoughts
        if self.vertex:
            usage["trafficType"] = "ON_DEMAND"
        return {k: v for k, v in usage.items() if v != 0}

    def _envelope(self, model: str, response_id: str, created: str) -> dict[str, Any]:
        if self.vertex:
            return {"modelVersion": model, "createTime": created, "responseId": response_id}
        return {"modelVersion": model, "responseId": response_id}

    def _candidate_json(self, cand: _Candidate, index: int, parts: list[dict[str, Any]] | None,
                        finished: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if parts:
            out["content"] = {"parts": parts, "role": "model"}
        elif finished and cand.finish != "SAFETY":
            out["content"] = {"role": "model"}
        if finished:
            out["finishReason"] = cand.finish
            if self.vertex and cand.parts and "text" in cand.parts[0]:
                out["avgLogprobs"] = -0.0421
        if index or not self.vertex:
            out["index"] = index
        if finished and cand.ratings is not None:
            out["safetyRatings"] = cand.ratings
        return out

    def _blocked(self, plan: _Plan, envelope: dict[str, Any]) -> dict[str, Any]:
        feedback: dict[str, Any] = {"blockReason": plan.blocked, "safetyRatings": self._ratings(blocked=True)}
        if self.vertex:
            feedback["blockReasonMessage"] = "The prompt was blocked due to safety reasons."
        usage = self._usage(_Plan(prompt=plan.prompt, details=plan.details, cached=plan.cached))
        return {"promptFeedback": feedback, "usageMetadata": usage, **envelope}

    def _response(self, plan: _Plan, envelope: dict[str, Any]) -> dict[str, Any]:
        if plan.blocked:
            return self._blocked(plan, envelope)
        candidates = []
        for index, cand in enumerate(plan.candidates):
            thought = [{"text": cand.thought, "thought": True}] if cand.thought else []
            candidates.append(self._candidate_json(cand, index, thought + cand.parts, finished=True))
        return {"candidates": candidates, "usageMetadata": self._usage(plan), **envelope}

    def _chunks(self, plan: _Plan, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream: per candidate, its thought, then its text ``words_per_chunk`` words a chunk (or its function
        calls in one), chunk k carrying every candidate's piece k; ``finishReason`` on the last chunk."""
        if plan.blocked:
            return [self._blocked(plan, envelope)]
        pieces: list[list[list[dict[str, Any]]]] = []
        for cand in plan.candidates:
            mine: list[list[dict[str, Any]]] = [[{"text": cand.thought, "thought": True}]] if cand.thought else []
            if cand.parts and "text" in cand.parts[0]:
                words = word_pieces(cand.parts[0]["text"])
                step = max(1, self.words_per_chunk)
                mine += [[{"text": "".join(words[i:i + step])}] for i in range(0, len(words), step)]
                if "thoughtSignature" in cand.parts[0]:
                    mine[-1][0]["thoughtSignature"] = cand.parts[0]["thoughtSignature"]
            elif cand.parts:
                mine.append(cand.parts)
            pieces.append(mine)
        count = max(1, *(len(p) for p in pieces))
        chunks: list[dict[str, Any]] = []
        emitted = [""] * len(plan.candidates)
        called = [0] * len(plan.candidates)
        for k in range(count):
            last = k == count - 1
            candidates = []
            for index, cand in enumerate(plan.candidates):
                parts = pieces[index][k] if k < len(pieces[index]) else None
                if parts is None and not last:
                    continue
                emitted[index] += "".join(p.get("text", "") for p in parts or [] if not p.get("thought"))
                called[index] += sum(_part_tokens(p)[1] for p in parts or [] if "functionCall" in p)
                candidates.append(self._candidate_json(cand, index, parts, finished=last))
            chunk: dict[str, Any] = {"candidates": candidates}
            if last:
                chunk["usageMetadata"] = self._usage(plan)
            elif not self.vertex:
                so_far = sum(text_tokens(t) + c for t, c in zip(emitted, called, strict=True))
                chunk["usageMetadata"] = self._usage(plan, candidates_tokens=so_far)
            chunks.append({**chunk, **envelope})
        return chunks

    async def _generate(self, request: web.Request, body: dict[str, Any], model: str,
                        stream: bool) -> web.StreamResponse:
        self.served += 1
        response_id = f"fake{self.served:04d}{token_hex(8)}"
        plan = self._plan(body, model, response_id)
        envelope = self._envelope(model, response_id, _iso_now())
        if not stream:
            return _json(self._response(plan, envelope))
        chunks = self._chunks(plan, envelope)
        sse = request.query.get("alt") == "sse"
        headers = {"Content-Type": "text/event-stream" if sse else "application/json; charset=UTF-8",
                   "Content-Disposition": "attachment", "Vary": "Origin, X-Origin, Referer"}
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        frames = _sse_frames(chunks) if sse else _array_frames(chunks)
        for i, frame in enumerate(frames):
            if i == self.die_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(frame)
        await resp.write_eof()
        return resp

    def _embedding_dims(self, model: str, wanted: Any, where: str) -> tuple[int, str | None]:
        full = self.embedding_models[model]
        if wanted is None or wanted == 0:
            return full, None
        if not 1 <= wanted <= full:
            return full, (f"Unable to submit request because the output dimensionality {wanted} is not supported. "
                          f"The supported range is from 1 to {full}." if self.vertex
                          else f"* {where}.output_dimensionality: output_dimensionality must be in the range "
                          f"[1, {full}]\n")
        return int(wanted), None


def _sse_frames(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


def _array_frames(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    for i, chunk in enumerate(chunks):
        yield (b"[" if i == 0 else b",\r\n") + orjson.dumps(chunk, option=orjson.OPT_INDENT_2)
    yield b"]"


def _content_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    return "".join(str(p.get("text", "")) for p in content.get("parts") or [] if isinstance(p, dict))


# --- the Gemini API ----------------------------------------------------------------------------------------------

@dataclass
class FakeGemini(_Upstream):
    """Knobs and records of one fake Gemini API; owned by one test, mutated only by it."""

    api_key: str = "AIza-fake-gemini-key"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{version}/models/{call}", self._route)
        return app

    def _failure(self, code: int) -> web.Response:
        if code == 429:
            return google_error(429, "You exceeded your current quota, please check your plan and billing details. "
                                "For more information on this error, head to: "
                                "https://ai.google.dev/gemini-api/docs/rate-limits.", [
                                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                                        "quotaMetric": "generativelanguage.googleapis.com/"
                                                       "generate_content_paid_tier_input_token_count",
                                        "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute"}]},
                                    {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
                                        "description": "Learn more about Gemini API quotas",
                                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                                    {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                     "retryDelay": f"{self.retry_delay_s}s"}])
        if code == 500:
            return google_error(500, "An internal error has occurred. Please retry or report in "
                                     "https://developers.generativeai.google/guide/troubleshooting")
        if code == 503:
            return google_error(503, "The model is overloaded. Please try again later.")
        return super()._failure(code)

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return google_error(403, UNREGISTERED_CALLER)
        if key != self.api_key:
            return google_error(400, INVALID_API_KEY, [
                _error_info("API_KEY_INVALID", "googleapis.com", {"service": "generativelanguage.googleapis.com"}),
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": INVALID_API_KEY}])
        return None

    def _not_found(self, model: str, version: str, method: str) -> web.Response:
        method = "StreamGenerateContent" if method == "streamGenerateContent" else method
        return google_error(404, f"models/{model} is not found for API version {version}, or is not supported for "
                                 f"{method}. Call ListModels to see the list of available models and their supported "
                                 "methods.")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        model, _, method = request.match_info["call"].rpartition(":")
        raw, ok = await self._read(request)
        if version not in ("v1", "v1beta"):
            return google_error(404, "Method not found.")
        refused = self._auth(request)
        if refused is not None:
            return refused
        message = {"generateContent": "GenerateContentRequest", "streamGenerateContent": "GenerateContentRequest",
                   "countTokens": "CountTokensRequest", "embedContent": "EmbedContentRequest",
                   "batchEmbedContents": "BatchEmbedContentsRequest"}.get(method)
        if message is None:
            return google_error(404, "Method not found.")
        body, refused = self._parse(raw, ok, message, version)
        if refused is not None:
            return refused
        embedding = method in ("embedContent", "batchEmbedContents")
        if model not in (self.embedding_models if embedding else self.models):
            return self._not_found(model, version, method)
        if method in ("generateContent", "streamGenerateContent"):
            problem = self._check_generate(body, model, "GenerateContentRequest")
        elif method == "countTokens":
            problem, body = self._check_count(body, model)
        else:
            problem = self._check_embed(body, model, method)
        if problem:
            return google_error(400, problem)
        answer = await self._knobs(request)
        if answer is not None:
            return answer
        if method == "countTokens":
            inner = body.get("generateContentRequest") or body
            count = prompt_tokens(inner) + (self.cached_tokens if inner.get("cachedContent") else 0)
            result: dict[str, Any] = {"totalTokens": count, "promptTokensDetails": [
                {"modality": m, "tokenCount": n} for m, n in prompt_token_details(inner).items()]}
            if inner.get("cachedContent") and self.cached_tokens:
                result["cachedContentTokenCount"] = self.cached_tokens
            return _json(result)
        if method == "embedContent":
            return _json({"embedding": self._embedding(body, model)})
        if method == "batchEmbedContents":
            return _json({"embeddings": [self._embedding(r, model) for r in body.get("requests") or []]})
        return await self._generate(request, body, model, stream=method == "streamGenerateContent")

    def _check_count(self, body: dict[str, Any], model: str) -> tuple[str | None, dict[str, Any]]:
        inner = body.get("generateContentRequest")
        if inner is not None and body.get("contents"):
            return ("* CountTokensRequest: only one of contents or generate_content_request may be set\n", body)
        if inner is None:
            if not body.get("contents"):
                return "* CountTokensRequest.contents: contents is not specified\n", body
            return self._check_generate(body, model, "CountTokensRequest", signatures=False), body
        if inner.get("model") not in (f"models/{model}", model):
            return "* CountTokensRequest.generate_content_request.model: unexpected model name format\n", body
        return self._check_generate(inner, model, "CountTokensRequest.generate_content_request",
                                    signatures=False), body

    def _check_embed(self, body: dict[str, Any], model: str, method: str) -> str | None:
        if method == "embedContent":
            requests, where = [body], ["EmbedContentRequest"]
        else:
            requests = body.get("requests") or []
            where = [f"BatchEmbedContentsRequest.requests[{i}]" for i in range(len(requests))]
            if not requests:
                return "* BatchEmbedContentsRequest.requests: requests is not specified\n"
            if len(requests) > 100:
                return "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
        for req, at in zip(requests, where, strict=True):
            if method == "batchEmbedContents" and req.get("model") != f"models/{model}":
                return (f"* {at}.model: the model of each request must be the batch's model "
                        f"(models/{model})\n")
            if not _content_text(req.get("content")):
                return f"* {at}.content: content is not specified\n"
            problem = self._embedding_dims(model, req.get("outputDimensionality"), at)[1]
            if problem:
                return problem
        return None

    def _embedding(self, req: dict[str, Any], model: str) -> dict[str, Any]:
        dims = self._embedding_dims(model, req.get("outputDimensionality"), "")[0]
        return {"values": embedding_values(_content_text(req.get("content")), dims, self.embedding_models[model],
                                           str(req.get("taskType") or ""))}


# --- Vertex AI ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceAccountKey:
    """A throwaway service account: an RSA key pair under an email, and the JSON key file that names it."""

    client_email: str
    private_key_id: str
    private_key_pem: str
    public_key_pem: str
    project_id: str

    def info(self, token_uri: str) -> dict[str, str]:
        """The JSON key file's content, with ``token_uri`` where google-auth will ask for tokens."""
        return {"type": "service_account", "project_id": self.project_id, "private_key_id": self.private_key_id,
                "private_key": self.private_key_pem, "client_email": self.client_email,
                "client_id": str(int(self.private_key_id[:12], 16)), "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": token_uri, "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
                                        + quote(self.client_email),
                "universe_domain": "googleapis.com"}

    def write(self, path: Path, token_uri: str) -> Path:
        """Write the JSON key file to ``path`` (mode 0600) and return it."""
        path.write_bytes(orjson.dumps(self.info(token_uri), option=orjson.OPT_INDENT_2))
        path.chmod(0o600)
        return path


def new_service_account_key(project_id: str = "fake-project", name: str = "tollway-test") -> ServiceAccountKey:
    """A new service account ``{name}@{project_id}.iam.gserviceaccount.com`` with a fresh 2048-bit RSA key (made
    with ``cryptography``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return ServiceAccountKey(client_email=f"{name}@{project_id}.iam.gserviceaccount.com", private_key_id=token_hex(20),
                             private_key_pem=private, public_key_pem=public, project_id=project_id)


@dataclass
class IssuedToken:
    client_email: str
    scopes: frozenset[str]
    expires_at: float


def _b64json(segment: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@dataclass
class FakeVertex(_Upstream):
    """Knobs and records of one fake Vertex AI endpoint (and its OAuth token endpoint); owned by one test."""

    vertex: ClassVar[bool] = True
    project: str = "fake-project"
    location: str = "us-central1"
    reply: str = "Hello from the fake Vertex Gemini, word by word."
    models: frozenset[str] = VERTEX_MODELS
    embedding_models: dict[str, int] = field(default_factory=lambda: dict(VERTEX_EMBEDDING_MODELS))
    token_lifetime_s: int = 3599
    trusted: dict[str, ServiceAccountKey] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    token_requests: list[Received] = field(default_factory=list)
    token_uri: str = ""
    service_account: ServiceAccountKey | None = None
    credentials_file: Path | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}",
                            self._route)
        return app

    def trust(self, key: ServiceAccountKey) -> None:
        """Accept JWTs signed by ``key`` at the token endpoint."""
        self.trusted[key.client_email] = key

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (the credentials holding them do not know)."""
        for issued in self.tokens.values():
            issued.expires_at = time.time() - 1

    def credentials(self, scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)) -> google_service_account.Credentials:
        """google-auth service-account credentials from ``credentials_file`` (their token_uri is the fake's)."""
        from google.oauth2 import service_account

        assert self.credentials_file is not None
        credentials: google_service_account.Credentials = (
            service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(self.credentials_file), scopes=list(scopes)))
        return credentials

    # -- the OAuth 2.0 token endpoint -------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(Received(request.path, dict(request.query), dict(request.headers), form))
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        email, scopes, problem = self._verify(form.get("assertion", ""))
        if problem is not None:
            return problem
        token = "ya29.c." + token_urlsafe(48)
        self.tokens[token] = IssuedToken(email, scopes, time.time() + self.token_lifetime_s)
        return _json({"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"})

    def _verify(self, assertion: str) -> tuple[str, frozenset[str], web.Response | None]:
        from google.auth import crypt

        segments = assertion.split(".")
        if len(segments) != 3:
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        try:
            header, claims = _b64json(segments[0]), _b64json(segments[1])
            signature = base64.urlsafe_b64decode(segments[2] + "=" * (-len(segments[2]) % 4))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "", frozenset(), _oauth_error("invalid_request", "Invalid JWT")
        key = self.trusted.get(str(claims.get("iss", "")))
        if key is None:
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid grant: account not found")
        verifier = crypt.RSAVerifier.from_string(key.public_key_pem)  # type: ignore[no-untyped-call]
        if (header.get("alg") != "RS256" or header.get("kid", key.private_key_id) != key.private_key_id
                or not verifier.verify(f"{segments[0]}.{segments[1]}".encode(), signature)):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") not in (GOOGLE_TOKEN_URI, "https://www.googleapis.com/oauth2/v4/token", self.token_uri):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT: Failed audience check.")
        now, iat, exp = time.time(), claims.get("iat"), claims.get("exp")
        if (not isinstance(iat, int | float) or not isinstance(exp, int | float) or exp < now or iat > now + 300
                or exp - iat > 3600):
            return "", frozenset(), _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 "
                                                 "minutes) and in a reasonable timeframe. Check your iat and exp "
                                                 "values in the JWT claim.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            return "", frozenset(), _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return key.client_email, scopes, None

    # -- the prediction service -------------------------------------------------------------------------------

    def _auth(self, request: web.Request, version: str, method: str) -> web.Response | None:
        rpc = method[:1].upper() + method[1:]
        metadata = {"method": f"google.cloud.aiplatform.{version}.PredictionService.{rpc}",
                    "service": "aiplatform.googleapis.com"}
        header = request.headers.get("Authorization", "")
        if not header:
            keyed = request.headers.get("x-goog-api-key") or request.query.get("key")
            return google_error(401, API_KEY_NOT_SUPPORTED if keyed else MISSING_CREDENTIALS,
                                [_error_info("CREDENTIALS_MISSING", "googleapis.com", metadata)])
        issued = self.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if issued is None or issued.expires_at <= time.time():
            reason = "ACCESS_TOKEN_EXPIRED" if issued is not None else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
            return google_error(401, INVALID_CREDENTIALS, [_error_info(reason, "googleapis.com", metadata)])
        if CLOUD_PLATFORM_SCOPE not in issued.scopes:
            return google_error(403, "Request had insufficient authentication scopes.", [
                _error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)])
        return None

    def _resource(self, request: web.Request, model: str) -> str:
        info = request.match_info
        return f"projects/{info['project']}/locations/{info['location']}/publishers/{info['publisher']}/models/{model}"

    async def _route(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        version = info["version"]
        model, _, method = info["call"].rpartition(":")
        raw, ok = await self._read(request)
        if version not in ("v1", "v1beta1"):
            return google_error(404, "Method not found.")
        refused = self._auth(request, version, method)
        if refused is not None:
            return refused
        message = {"generateContent": "GenerateContentRequest", "streamGenerateContent": "GenerateContentRequest",
                   "countTokens": "CountTokensRequest", "predict": "PredictRequest",
                   "embedContent": "EmbedContentRequest"}.get(method)
        if message is None:
            return google_error(404, "Method not found.")
        if info["project"] != self.project:
            permission = "aiplatform.endpoints.predict"
            resource = f"//aiplatform.googleapis.com/{self._resource(request, model)}"
            return google_error(403, f"Permission '{permission}' denied on resource '{resource}' (or it may not "
                                     "exist).", [_error_info("IAM_PERMISSION_DENIED", "aiplatform.googleapis.com",
                                                             {"permission": permission, "resource": resource})])
        if info["location"] != self.location:
            return google_error(400, "Request contains an invalid argument.")
        body, refused = self._parse(raw, ok, message, version)
        if refused is not None:
            return refused
        embedding = method in ("predict", "embedContent")
        known = (model in self.models or model in self.embedding_models) if method == "countTokens" else (
            model in (self.embedding_models if embedding else self.models))
        if method == "predict" and model in self.models:
            return google_error(400, "Gemini cannot be accessed through Vertex Predict/RawPredict API. Please follow "
                                     "https://cloud.google.com/vertex-ai/docs/generative-ai/start/quickstarts/"
                                     "quickstart-multimodal for Gemini usage.", status="FAILED_PRECONDITION")
        if info["publisher"] != "google" or not known:
            return google_error(404, f"Publisher Model `{self._resource(request, model)}` was not found or your "
                                     "project does not have access to it. Please ensure you are using a valid model "
                                     "version. For more information, see: "
                                     "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions")
        if method in ("generateContent", "streamGenerateContent"):
            problem = self._check_generate(body, model, "GenerateContentRequest")
        elif method == "countTokens":
            problem = None if body.get("contents") or body.get("instances") else (
                "Unable to submit request because it must include at least one parts field, which describes the "
                f"prompt input. {_VERTEX_DOCS}")
        elif method == "predict":
            problem = self._check_predict(body, model)
        else:
            problem = (None if _content_text(body.get("content")) else "Unable to submit request because it has an "
                       f"empty text parameter. Add a value to the parameter and try again. {_VERTEX_DOCS}") or (
                self._embedding_dims(model, (body.get("embedContentConfig") or {}).get("outputDimensionality"),
                                     "")[1])
        if problem:
            return google_error(400, problem)
        answer = await self._knobs(request)
        if answer is not None:
            return answer
        if method == "countTokens":
            details = prompt_token_details(body)
            return _json({"totalTokens": sum(details.values()), "totalBillableCharacters": billable_characters(body),
                          "promptTokensDetails": [{"modality": m, "tokenCount": n} for m, n in details.items()]})
        if method == "predict":
            return _json(self._predict(body, model))
        if method == "embedContent":
            return _json(self._embed_content(body, model))
        return await self._generate(request, body, model, stream=method == "streamGenerateContent")

    def _check_predict(self, body: dict[str, Any], model: str) -> str | None:
        instances = body.get("instances") or []
        if not instances:
            return "Instances field is required."
        if len(instances) > 250:
            return f"The number of instances ({len(instances)}) exceeds the limit of 250 per request."
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("content"), str):
                return f"instances[{i}].content: a text content is required."
            task = instance.get("task_type", instance.get("taskType"))
            if task is not None and task not in _ENUMS["TaskType"][1]:
                return f"instances[{i}].task_type: unsupported task type {task}."
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        return self._embedding_dims(model, parameters.get("outputDimensionality"), "")[1]

    def _predict(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        dims = self._embedding_dims(model, parameters.get("outputDimensionality"), "")[0]
        predictions, billable = [], 0
        for instance in body["instances"]:
            text = instance["content"]
            tokens = text_tokens(text)
            billable += _billable(text)
            values = embedding_values(text, dims, self.embedding_models[model],
                                      str(instance.get("task_type", instance.get("taskType")) or ""))
            predictions.append({"embeddings": {"statistics": {"truncated": tokens > EMBEDDING_INPUT_TOKENS,
                                                              "token_count": min(tokens, EMBEDDING_INPUT_TOKENS)},
                                               "values": values}})
        return {"predictions": predictions, "metadata": {"billableCharacterCount": billable}}

    def _embed_content(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        config = body.get("embedContentConfig") or {}
        dims = self._embedding_dims(model, config.get("outputDimensionality"), "")[0]
        text = _content_text(body.get("content"))
        tokens = text_tokens(text)
        return {"embedding": {"values": embedding_values(text, dims, self.embedding_models[model],
                                                         str(config.get("taskType") or ""))},
                "usageMetadata": {"promptTokenCount": min(tokens, EMBEDDING_INPUT_TOKENS),
                                  "totalTokenCount": min(tokens, EMBEDDING_INPUT_TOKENS)},
                "truncated": tokens > EMBEDDING_INPUT_TOKENS}


def _oauth_error(error: str, description: str) -> web.Response:
    """The token endpoint's error: 400 ``{"error", "error_description"}`` (RFC 6749 section 5.2)."""
    return _json({"error": error, "error_description": description}, status=400)


# --- starting them -----------------------------------------------------------------------------------------------

async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@asynccontextmanager
async def fake_gemini(api_key: str = "AIza-fake-gemini-key") -> AsyncIterator[FakeGemini]:
    fake = FakeGemini(api_key=api_key)
    runner, fake.base_url = await _serve(fake.app())
    try:
        yield fake
    finally:
        await runner.cleanup()


@asynccontextmanager
async def fake_vertex(project: str = "fake-project", location: str = "us-central1",
                      service_account: ServiceAccountKey | None = None) -> AsyncIterator[FakeVertex]:
    """Start a fake Vertex AI; its service account (``service_account``, else a new one) is trusted and written,
    with ``token_uri`` = ``fake.token_uri``, to ``fake.credentials_file`` (removed on exit)."""
    fake = FakeVertex(project=project, location=location)
    fake.service_account = service_account or new_service_account_key(project)
    fake.trust(fake.service_account)
    runner, fake.base_url = await _serve(fake.app())
    fake.token_uri = f"{fake.base_url}/token"
    try:
        with tempfile.TemporaryDirectory(prefix="fake-vertex-") as tmp:
            fake.credentials_file = fake.service_account.write(Path(tmp) / "service-account.json", fake.token_uri)
            yield fake
    finally:
        await runner.cleanup()
