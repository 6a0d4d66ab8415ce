"""Request validation: Google's JSON-to-proto parsing of a body (``_Parser``: unknown fields, wrong types and
enums, lists where a field is not repeated), the messages of the Gemini API and of Vertex AI it parses against,
and the snake_case and camelCase names of their fields."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

HARM_CATEGORIES = ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT",
                   "HARM_CATEGORY_SEXUALLY_EXPLICIT")


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
