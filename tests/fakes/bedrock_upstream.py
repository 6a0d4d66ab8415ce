"""A fake AWS Bedrock Runtime: a real aiohttp application on loopback speaking Bedrock's wire formats.

``async with fake_bedrock(access_key="AKIDEXAMPLE", secret_key="...", session_token=None, region="eu-central-1") as
fake:`` starts it on a free port; ``fake.endpoint`` (``http://127.0.0.1:PORT``, no path) stands in for
``https://bedrock-runtime.{region}.amazonaws.com``. Request and response shapes come from botocore's own copy of the
service model (``botocore/data/bedrock-runtime/2023-09-30/service-2.json``). It serves:

- ``POST /model/{modelId}/converse``: the Converse API. The body is checked against the ``ConverseRequest`` shape
  (types, required members, enums, lengths, ranges, patterns, unions with exactly one member, base64 blobs; a key
  the shape does not have, at any depth, is a 400 ``ValidationException``, a wrong JSON type a 400
  ``SerializationException``) and against Bedrock's conversation rules (starts with a user turn, roles alternate, no
  empty content or blank text, every ``toolUse`` answered by a ``toolResult`` in the next turn, ``toolConfig`` present
  when tool blocks are, ``toolChoice.tool`` names an offered tool). The answer is a ``ConverseResponse``: one
  ``toolUse`` (``tool_input``, else an example of the tool's ``inputSchema``; ``tool_preamble`` text before it) when
  tools are offered and ``toolChoice`` is ``any``/``tool``, or it is ``auto`` and the last user turn is text saying
  "call"; otherwise ``reply``, cut at ``maxTokens`` (``max_tokens``) or at the first of ``stopSequences``
  (``stop_sequence``). ``usage``: ``inputTokens`` = ``converse_input_tokens(body)``, ``outputTokens`` =
  ``output_tokens(content)``, the ``cache_read``/``cache_write`` knobs as ``cacheRead``/``cacheWriteInputTokens``,
  ``totalTokens`` the sum of all four.
- ``POST /model/{modelId}/converse-stream``: the same answer as ``application/vnd.amazon.eventstream`` frames
  (``eventstream_frame``): messageStart, then per content block (a text block has no contentBlockStart, as on AWS;
  a toolUse block opens with ``contentBlockStart {start: {toolUse: {toolUseId, name}}}``) contentBlockDelta frames
  (a text block one per word, ``word_pieces``; a toolUse block its input JSON in 10-character fragments) and
  contentBlockStop, then messageStop ``{stopReason}`` and metadata ``{usage, metrics}``. Each payload carries AWS's
  ``"p"`` padding field (``padding``). ``error_after_events`` sends an exception frame (``eventstream_exception``,
  ``stream_error``, e.g. ``throttlingException``/``modelStreamErrorException``) in place of that event and ends;
  ``die_after_events`` closes the socket before it; ``event_delay_s`` waits before each frame.
- ``POST /model/{modelId}/invoke``: InvokeModel with the model's native body: Anthropic Messages on
  ``anthropic.*`` (and inference profiles ``eu.anthropic.*`` etc.): ``anthropic_version: "bedrock-2023-05-31"``
  required, no ``model``/``stream`` (Bedrock's "Malformed input request: #: ... " messages), then the Messages rules
  of ``tests.fakes.anthropic_upstream.check``; answers the Messages response (``id`` ``msg_bdrk_…``, ``tool_use``
  under the same rule as Converse with ``tool_choice`` ``any``/``tool``, usage with ``anthropic_input_tokens`` and the
  cache fields). Titan Text Embeddings (``amazon.titan-embed-text-v2:0``: ``{inputText, dimensions?, normalize?,
  embeddingTypes?}`` → ``{embedding, inputTextTokenCount[, embeddingsByType]}``; v1 takes ``inputText`` only, 1536
  dimensions) and Cohere Embed v3 (``cohere.embed-english-v3``/``cohere.embed-multilingual-v3``: ``{texts,
  input_type, truncate?, embedding_types?}`` → ``{id, embeddings, texts, response_type}``, 1024 dimensions,
  ``embeddings_floats`` or ``embeddings_by_type``). Every invoke answer carries ``X-Amzn-Bedrock-Input-Token-Count``,
  ``X-Amzn-Bedrock-Output-Token-Count`` and ``X-Amzn-Bedrock-Invocation-Latency`` (Anthropic also
  ``X-Amzn-Bedrock-Cache-Read/Write-Input-Token-Count`` when non-zero).

Every request is first recorded (``fake.requests``: operation, path, model id, headers without ``Authorization``,
parsed body, raw body, the signature's credential and signed headers, the authentication error answered if any),
then authenticated by ``verify_signature``: SigV4 recomputed with botocore's ``SigV4Auth`` at the request's own
``X-Amz-Date`` over exactly the headers it signed; credential scope date, region and service ``bedrock``;
``X-Amz-Date`` within 5 minutes of the fake's clock (shifted by ``clock_offset_s``); ``X-Amz-Security-Token`` equal
to ``session_token`` (or absent without one); ``x-amz-content-sha256``, when sent, the body's hash. Refusals are AWS's
403s: ``x-amzn-ErrorType`` ``MissingAuthenticationTokenException``, ``IncompleteSignatureException``,
``InvalidSignatureException``, ``UnrecognizedClientException`` (unknown key or token), ``ExpiredTokenException``
(``token_expired``), body ``{"message"}``. A Bedrock API key (``api_key``) is accepted as ``Authorization: Bearer``.

Then the knobs: ``delay_s`` (wait before answering), ``drop_connection`` (close the socket without answering),
``fail_status``/``fail_times`` (answer that many times with the exception of ``FAIL_ERRORS[fail_status]``: 429
``ThrottlingException``, 400 ``ValidationException``, 404 ``ResourceNotFoundException``, 424 ``ModelErrorException``,
500 ``InternalServerException``, 503 ``ServiceUnavailableException``, 408 ``ModelTimeoutException``, 403
``AccessDeniedException``; ``fail_error`` names any error shape of the model instead, its status from the model). A
model id not in ``models`` (after stripping an ARN and a geographic inference-profile prefix, ``base_model_id``) is a
404 ``ResourceNotFoundException``. Other knobs: ``reply``, ``tool_input``, ``tool_preamble``, ``stop_reason``
(forces the stop reason), ``cache_read``/``cache_write``. Errors carry ``x-amzn-ErrorType`` and
``x-amzn-RequestId`` headers and a ``{"message"}`` JSON body, as the rest-json protocol does.

Token counts are deterministic: ``text_tokens`` (one per 4 characters, rounded up), ``converse_input_tokens``,
``anthropic_input_tokens``, ``output_tokens``; embeddings ``embedding_vector`` (a function of the text alone).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import math
import re
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from secrets import token_urlsafe
from typing import Any

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.compat import HTTPHeaders  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.loaders import create_loader  # type: ignore[import-untyped]
from botocore.model import ServiceModel  # type: ignore[import-untyped]

from tests.fakes.anthropic_upstream import check as anthropic_check

SERVICE = "bedrock"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_SKEW_S = 300
IMAGE_TOKENS = 258
MODELS = frozenset({
    "anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0", "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0",
    "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0", "meta.llama3-1-8b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0", "amazon.titan-embed-text-v1", "amazon.titan-embed-text-v2:0",
    "cohere.embed-english-v3", "cohere.embed-multilingual-v3"})
GEO_PREFIXES = frozenset({"us", "eu", "apac", "us-gov", "global", "jp", "au", "ca"})
FAIL_ERRORS = {429: "ThrottlingException", 400: "ValidationException", 404: "ResourceNotFoundException",
               424: "ModelErrorException", 500: "InternalServerException", 503: "ServiceUnavailableException",
               408: "ModelTimeoutException", 403: "AccessDeniedException"}
ERROR_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
    "ModelErrorException": "The system encountered an unexpected error during processing. Try your request again.",
    "InternalServerException": "The system encountered an unexpected error during processing. Try your request again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ModelNotReadyException": "Model is not ready to serve inference requests. Try again later.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ModelStreamErrorException": "The system encountered an unexpected error during processing. Try your request "
                                 "again.",
}
SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                      "Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN = "The security token included in the request is invalid."
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_STARTED = web.RequestKey("started", float)


# --- token counts, embeddings, examples ---------------------------------------------------------------------------

def text_tokens(text: str) -> int:
    """The fake's token count of a text: one token per 4 characters, rounded up."""
    return (len(text) + 3) // 4


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _converse_block_tokens(block: Mapping[str, Any]) -> int:
    if "text" in block:
        return text_tokens(block["text"])
    if "image" in block:
        return IMAGE_TOKENS
    if "toolUse" in block:
        return text_tokens(block["toolUse"]["name"] + _json_text(block["toolUse"]["input"]))
    if "toolResult" in block:
        return sum(_converse_block_tokens(part) if "json" not in part else text_tokens(_json_text(part["json"]))
                   for part in block["toolResult"]["content"])
    if "cachePoint" in block:
        return 0
    return text_tokens(_json_text(block))


def converse_input_tokens(body: Mapping[str, Any]) -> int:
    """The fake's ``inputTokens`` of a Converse body: ``text_tokens`` of each system text, 3 per message plus each
    content block (text: its text; image: ``IMAGE_TOKENS``; toolUse: name + input JSON; toolResult: its texts and
    JSONs; cachePoint: 0; anything else: its JSON), plus ``text_tokens`` of each offered ``toolSpec``'s JSON."""
    system = sum(_converse_block_tokens(block) for block in body.get("system") or [])
    messages = sum(3 + sum(_converse_block_tokens(block) for block in m["content"]) for m in body.get("messages") or [])
    tools = sum(text_tokens(_json_text(t["toolSpec"])) for t in (body.get("toolConfig") or {}).get("tools") or []
                if "toolSpec" in t)
    return system + messages + tools


def _anthropic_block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return text_tokens(block.get("text", ""))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "tool_use":
        return text_tokens(block.get("name", "") + _json_text(block.get("input", {})))
    if kind == "tool_result":
        content = block.get("content", "")
        return sum(_anthropic_block_tokens(part) for part in (content if isinstance(content, list) else [content]))
    return text_tokens(_json_text(block))


def anthropic_input_tokens(body: Mapping[str, Any]) -> int:
    """The fake's ``input_tokens`` of an Anthropic Messages body on Bedrock, counted like ``converse_input_tokens``:
    the system text(s), 3 per message plus its blocks, and each tool's JSON."""
    system = body.get("system") or []
    count = sum(_anthropic_block_tokens(part) for part in (system if isinstance(system, list) else [system]))
    for m in body.get("messages") or []:
        content = m.get("content", "")
        count += 3 + sum(_anthropic_block_tokens(part) for part in (content if isinstance(content, list) else
                                                                      [content]))
    return count + sum(text_tokens(_json_text(tool)) for tool in body.get("tools") or [])


def output_tokens(content: Iterable[Mapping[str, Any]]) -> int:
    """The fake's output tokens of answer blocks (Converse or Anthropic): ``text_tokens`` of each text, and of each
    tool call's name + input JSON."""
    count = 0
    for block in content:
        if "text" in block:
            count += text_tokens(block["text"])
        call = block.get("toolUse") or (block if block.get("type") == "tool_use" else None)
        if call is not None:
            count += text_tokens(call["name"] + _json_text(call["input"]))
    return count


def word_pieces(text: str) -> list[str]:
    """The reply as the fake streams it: one contentBlockDelta per word, spaces leading."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


def embedding_vector(text: str, dimensions: int, normalize: bool = True) -> list[float]:
    """The fake's embedding of a text: a function of the text alone; unit length when ``normalize``, else components
    in [-1, 1) as produced. Every component is a float32 value."""
    raw = b"".join(hashlib.sha256(text.encode() + i.to_bytes(4, "little")).digest()
                   for i in range((dimensions + 7) // 8))
    units = [u / 2**31 - 1.0 for u in struct.unpack(f"<{dimensions}I", raw[: dimensions * 4])]
    norm = (math.sqrt(sum(u * u for u in units)) or 1.0) if normalize else 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(u / norm for u in units))))


def _int8(vector: list[float]) -> list[int]:
    scale = 127 / (max(abs(v) for v in vector) or 1.0)
    return [max(-128, min(127, round(v * scale))) for v in vector]


def _packed_bits(vector: list[float]) -> list[int]:
    bits = [1 if v > 0 else 0 for v in vector]
    return [int("".join(map(str, bits[i:i + 8])).ljust(8, "0"), 2) for i in range(0, len(bits), 8)]


def cohere_embeddings(vector: list[float], kind: str) -> list[float] | list[int]:
    """One Cohere embedding of ``kind`` (float, int8, uint8, binary, ubinary) derived from the float ``vector``:
    int8 scaled so the largest component is ±127, uint8 that + 128, ubinary the signs packed 8 per byte (MSB first),
    binary that - 128."""
    if kind == "int8":
        return _int8(vector)
    if kind == "uint8":
        return [v + 128 for v in _int8(vector)]
    if kind == "ubinary":
        return _packed_bits(vector)
    if kind == "binary":
        return [v - 128 for v in _packed_bits(vector)]
    return vector


def example_input(schema: Any) -> Any:
    """A value satisfying a JSON schema's required parts: what the fake's tool call passes without ``tool_input``
    (objects get their required properties, strings "fake", numbers 1, booleans true, arrays ``minItems`` items)."""
    if not isinstance(schema, dict):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_input(properties.get(name, {})) for name in schema.get("required") or []}
    if kind == "array":
        return [example_input(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    examples: dict[str, Any] = {"string": "fake", "integer": 1, "number": 1, "boolean": True, "null": None}
    return examples.get(kind, "fake") if isinstance(kind, str) else "fake"


def base_model_id(model_id: str) -> str:
    """The foundation model a model id names: the resource of an ARN (``…:foundation-model/<id>``,
    ``…:inference-profile/<id>``), without a geographic inference-profile prefix (``eu.``, ``us.``, ``global.``…)."""
    if model_id.startswith("arn:"):
        resource = model_id.split(":", 5)[-1]
        model_id = resource.split("/", 1)[-1]
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in GEO_PREFIXES and "." in rest else model_id


# --- the AWS event-stream framing ---------------------------------------------------------------------------------

def eventstream_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One binary event-stream message: prelude (total length, headers length, CRC32 of both), string headers
    (name length, name, type 7, value length, value), payload, CRC32 of everything before it; big-endian."""
    raw_headers = b"".join(len(name.encode()).to_bytes(1, "big") + name.encode() + b"\x07"
                           + len(value.encode()).to_bytes(2, "big") + value.encode()
                           for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def eventstream_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An event message (``:event-type``, ``:content-type: application/json``, ``:message-type: event``)."""
    return eventstream_message({":event-type": event_type, ":content-type": "application/json",
                                ":message-type": "event"}, orjson.dumps(payload))


def eventstream_exception(exception_type: str, payload: Mapping[str, Any]) -> bytes:
    """An exception message (``:exception-type`` e.g. ``throttlingException``, ``:message-type: exception``)."""
    return eventstream_message({":exception-type": exception_type, ":content-type": "application/json",
                                ":message-type": "exception"}, orjson.dumps(payload))


# --- SigV4 ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """Why the service refuses a request: the ``x-amzn-ErrorType`` it answers and the ``message``."""

    error_type: str
    message: str


class _ServerSigV4(SigV4Auth):  # type: ignore[misc]
    """botocore's SigV4 over exactly the headers the client listed in ``SignedHeaders`` (as AWS computes it)."""

    def __init__(self, credentials: Any, region: str, signed: list[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = set(signed)

    def headers_to_sign(self, request: Any) -> Any:
        header_map = HTTPHeaders()
        for name, value in request.headers.items():
            if name.lower() in self._signed:
                header_map[name.lower()] = value
        return header_map


def parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    """The algorithm of an ``Authorization`` header and its ``Credential``/``SignedHeaders``/``Signature`` fields."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, field_value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = field_value.strip()
    return algorithm, fields


def verify_signature(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, *, access_key: str,
                     secret_key: str, session_token: str | None, region: str, now: float,
                     token_expired: bool = False) -> Refusal | None:
    """Why AWS would refuse this request's SigV4 signature (``url`` as sent, path still percent-encoded), or None."""
    pairs = list(headers)
    lower: dict[str, str] = {}
    for name, value in pairs:
        lower.setdefault(name.lower(), value)
    authorization = lower.get("authorization")
    if not authorization:
        return Refusal("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, fields = parse_authorization(authorization)
    if algorithm != "AWS4-HMAC-SHA256":
        return Refusal("IncompleteSignatureException", f"Unsupported AWS 'algorithm': '{algorithm}'")
    missing = [f"Authorization header requires '{name}' parameter." for name in ("Credential", "Signature",
                                                                                 "SignedHeaders")
               if name not in fields]
    amz_date = lower.get("x-amz-date")
    if amz_date is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        return Refusal("IncompleteSignatureException", " ".join(missing) + f" Authorization={authorization}")
    assert amz_date is not None
    scope = fields["Credential"].split("/")
    if len(scope) != 5:
        return Refusal("IncompleteSignatureException",
                           f"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/"
                           f"term, got '{fields['Credential']}'")
    key, scope_date, scope_region, scope_service, terminator = scope
    if key != access_key:
        return Refusal("UnrecognizedClientException", INVALID_TOKEN)
    try:
        signed_at = datetime.datetime.strptime(amz_date, _SIGV4_TIMESTAMP).replace(tzinfo=datetime.UTC)
    except ValueError:
        return Refusal("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got "
                                                           f"'{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601")
    if scope_date != amz_date[:8]:
        return Refusal("InvalidSignatureException",
                           f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                           f"HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.")
    if scope_region != region:
        return Refusal("InvalidSignatureException", "Credential should be scoped to a valid region. ")
    if scope_service != SERVICE:
        return Refusal("InvalidSignatureException", f"Credential should be scoped to correct service: "
                                                        f"'{SERVICE}'. ")
    if terminator != "aws4_request":
        return Refusal("InvalidSignatureException", f"Credential should be scoped with a valid terminator: "
                                                        f"'aws4_request', not '{terminator}'. ")
    clock = datetime.datetime.fromtimestamp(now, datetime.UTC)
    skew = datetime.timedelta(seconds=MAX_SKEW_S)

    def stamp(moment: datetime.datetime) -> str:
        return moment.strftime(_SIGV4_TIMESTAMP)

    if signed_at < clock - skew:
        return Refusal("InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than "
                                                        f"{stamp(clock - skew)} ({stamp(clock)} - 5 min.)")
    if signed_at > clock + skew:
        return Refusal("InvalidSignatureException", f"Signature not yet current: {amz_date} is still later than "
                                                        f"{stamp(clock + skew)} ({stamp(clock)} + 5 min.)")
    token = lower.get("x-amz-security-token")
    if token != session_token:
        return Refusal("UnrecognizedClientException", INVALID_TOKEN)
    if token is not None and token_expired:
        return Refusal("ExpiredTokenException", "The security token included in the request is expired")
    signed = [name.strip().lower() for name in fields["SignedHeaders"].split(";")]
    if "host" not in signed:
        return Refusal("InvalidSignatureException",
                           "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in signed:
        return Refusal("InvalidSignatureException", "'X-Amz-Date' must be a 'SignedHeader' in the AWS "
                                                        "Authorization.")
    content_sha = lower.get("x-amz-content-sha256")
    if content_sha is not None and content_sha != hashlib.sha256(body).hexdigest():
        return Refusal("InvalidSignatureException",
                           "The provided 'x-amz-content-sha256' header does not match what was computed.")
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in pairs:
        if name.lower() in signed:
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = _ServerSigV4(Credentials(access_key, secret_key, session_token), region, signed)
    canonical: str = signer.canonical_request(request)
    string_to_sign: str = signer.string_to_sign(request, canonical)
    expected: str = signer.signature(string_to_sign, request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return Refusal("InvalidSignatureException",
                           f"{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n"
                           f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n")
    return None


# --- validation against the service model ---------------------------------------------------------------------------

@cache
def service_model() -> Any:
    """botocore's model of Bedrock Runtime (``bedrock-runtime/2023-09-30/service-2.json``)."""
    return ServiceModel(create_loader().load_service_model("bedrock-runtime", "service-2", "2023-09-30"),
                        "bedrock-runtime")


def error_status(error_type: str) -> int:
    """The HTTP status the service model gives an error shape (400 for one it does not know)."""
    shape = service_model().shape_for(error_type) if error_type in service_model().shape_names else None
    if shape is None:
        return 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


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


# --- the server -----------------------------------------------------------------------------------------------------

@dataclass
class Received:
    """One request as it arrived: ``headers`` lack ``Authorization`` (``credential``/``signed_headers`` are its
    parts); ``auth_error`` is the ``x-amzn-ErrorType`` the fake answered for authentication (None: accepted)."""

    operation: str
    path: str
    model_id: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw_body: bytes
    credential: str = ""
    signed_headers: list[str] = field(default_factory=list)
    auth_error: str | None = None


def aws_error(error_type: str, message: str, status: int | None = None, **extra: Any) -> web.Response:
    """A rest-json error: ``x-amzn-ErrorType`` and ``x-amzn-RequestId`` headers, ``{"message", ...}`` body."""
    return web.Response(status=status or error_status(error_type), body=orjson.dumps({"message": message, **extra}),
                        content_type="application/json",
                        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})


def _request_id() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _cut(text: str, limit: int | None, stops: Iterable[str]) -> tuple[str, str | None, str | None]:
    """``text`` cut at the first stop sequence (reason ``stop_sequence``) or at ``limit`` tokens (``max_tokens``)."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if hits:
        at, stop = min(hits)
        return text[:at], "stop_sequence", stop
    if limit is not None and text_tokens(text) > limit:
        return text[: limit * 4], "max_tokens", None
    return text, None, None


def _says_call(text: str) -> bool:
    return re.search(r"\bcall", text, re.IGNORECASE) is not None


@dataclass
class FakeBedrock:
    """Knobs and records of one fake Bedrock Runtime; owned by one test, mutated only by it."""

    access_key: str = "AKIDEXAMPLE"
    secret_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    session_token: str | None = None
    region: str = "eu-central-1"
    api_key: str | None = None
    token_expired: bool = False
    clock_offset_s: float = 0.0
    models: set[str] = field(default_factory=lambda: set(MODELS))
    reply: str = "Hello from the fake Bedrock model."
    tool_input: dict[str, Any] | None = None
    tool_preamble: str = ""
    stop_reason: str | None = None
    cache_read: int = 0
    cache_write: int = 0
    fail_status: int = 0
    fail_times: int = 0
    fail_error: str | None = None
    delay_s: float = 0.0
    drop_connection: bool = False
    die_after_events: int = -1
    error_after_events: int = -1
    stream_error: str = "throttlingException"
    event_delay_s: float = 0.0
    padding: bool = True
    requests: list[Received] = field(default_factory=list)
    endpoint: str = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post("/model/{modelId}/converse", self._converse)
        app.router.add_post("/model/{modelId}/converse-stream", self._converse_stream)
        app.router.add_post("/model/{modelId}/invoke", self._invoke)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _prelude(self, request: web.Request, operation: str) -> tuple[Any, web.StreamResponse | None]:
        """What every endpoint does first: record the request, check its signature, then the ``delay_s``,
        ``drop_connection`` and ``fail_*`` knobs and the model id. The parsed body (None when it is not JSON), and
        the answer that ends the request (None: go on)."""
        request[_STARTED] = time.monotonic()
        raw = await request.read()
        try:
            parsed: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = None
        headers = {name: value for name, value in request.headers.items() if name.lower() != "authorization"}
        _, fields = parse_authorization(request.headers.get("Authorization", ""))
        model_id = request.match_info.get("modelId", "")
        received = Received(operation, request.path, model_id, headers, parsed if isinstance(parsed, dict) else {},
                            raw, fields.get("Credential", ""),
                            [h for h in fields.get("SignedHeaders", "").split(";") if h])
        self.requests.append(received)
        failure = self._authenticate(request, raw)
        if failure is not None:
            received.auth_error = failure.error_type
            return parsed, aws_error(failure.error_type, failure.message, 403)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return parsed, web.Response()
        if self.fail_times > 0:
            self.fail_times -= 1
            kind = self.fail_error or FAIL_ERRORS.get(self.fail_status, "InternalServerException")
            status = self.fail_status if self.fail_error is None and self.fail_status else error_status(kind)
            return parsed, aws_error(kind, ERROR_MESSAGES.get(kind, kind), status)
        if base_model_id(model_id) not in self.models:
            return parsed, aws_error("ResourceNotFoundException", ERROR_MESSAGES["ResourceNotFoundException"])
        return parsed, None

    def _authenticate(self, request: web.Request, raw: bytes) -> Refusal | None:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            if self.api_key is not None and hmac.compare_digest(authorization[7:], self.api_key):
                return None
            return Refusal("UnrecognizedClientException", INVALID_TOKEN)
        return verify_signature(request.method, f"{request.scheme}://{request.host}{request.raw_path}",
                                request.headers.items(), raw, access_key=self.access_key, secret_key=self.secret_key,
                                session_token=self.session_token, region=self.region,
                                now=time.time() + self.clock_offset_s, token_expired=self.token_expired)

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        """A path the service has no operation for: recorded, authenticated, then AWS's 404."""
        raw = await request.read()
        self.requests.append(Received("", request.path, "", {k: v for k, v in request.headers.items()
                                                             if k.lower() != "authorization"}, {}, raw))
        failure = self._authenticate(request, raw)
        if failure is not None:
            self.requests[-1].auth_error = failure.error_type
            return aws_error(failure.error_type, failure.message, 403)
        return aws_error("UnknownOperationException", "Unknown operation", 404)

    # --- Converse ---------------------------------------------------------------------------------------------------

    async def _converse_body(self, request: web.Request, operation: str) -> tuple[dict[str, Any],
                                                                                  web.StreamResponse | None]:
        parsed, answer = await self._prelude(request, operation)
        if answer is not None:
            return {}, answer
        if parsed is None:
            return {}, aws_error("SerializationException", "Invalid JSON in request body", 400)
        problem = check_shape(operation, parsed)
        if problem is not None:
            return {}, aws_error(problem.error_type, problem.message, 400)
        if base_model_id(request.match_info["modelId"]).partition(".")[2].startswith(("titan-embed", "embed")):
            return {}, aws_error("ValidationException", "This action doesn't support the model that you provided. "
                                                        "Try again with a supported text or chat model.")
        semantic = converse_problem(parsed)
        if semantic is not None:
            return {}, aws_error("ValidationException", semantic)
        body: dict[str, Any] = parsed
        return body, None

    def _converse_answer(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The content blocks and stop reason the fake model answers a Converse body with."""
        config = body.get("toolConfig") or {}
        tools = [t["toolSpec"] for t in config.get("tools") or [] if "toolSpec" in t]
        choice = config.get("toolChoice") or {"auto": {}}
        last = body["messages"][-1]
        text = " ".join(block["text"] for block in last["content"] if "text" in block)
        answering = last["role"] == "user" and any("toolResult" in block for block in last["content"])
        if tools and ("any" in choice or "tool" in choice or (not answering and _says_call(text))):
            forced = (choice.get("tool") or {}).get("name")
            spec = next((t for t in tools if t["name"] == forced), None) or next(
                (t for t in tools if t["name"].lower() in text.lower()), tools[0])
            call = {"toolUseId": f"tooluse_{token_urlsafe(16)}", "name": spec["name"],
                    "input": self.tool_input if self.tool_input is not None else example_input(
                        spec["inputSchema"].get("json"))}
            blocks = ([{"text": self.tool_preamble}] if self.tool_preamble else []) + [{"toolUse": call}]
            return blocks, self.stop_reason or "tool_use"
        inference = body.get("inferenceConfig") or {}
        reply, reason, _ = _cut(self.reply, inference.get("maxTokens"), inference.get("stopSequences") or [])
        return [{"text": reply}], self.stop_reason or reason or "end_turn"

    def _usage(self, input_tokens: int, output: int) -> dict[str, int]:
        return {"inputTokens": input_tokens, "outputTokens": output,
                "totalTokens": input_tokens + output + self.cache_read + self.cache_write,
                "cacheReadInputTokens": self.cache_read, "cacheWriteInputTokens": self.cache_write}

    async def _converse(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._converse_body(request, "Converse")
        if answer is not None:
            return answer
        blocks, stop_reason = self._converse_answer(body)
        return web.Response(body=orjson.dumps({
            "output": {"message": {"role": "assistant", "content": blocks}}, "stopReason": stop_reason,
            "usage": self._usage(converse_input_tokens(body), output_tokens(blocks)),
            "metrics": {"latencyMs": _latency(request)}}), content_type="application/json", headers=_request_id())

    async def _converse_stream(self, request: web.Request) -> web.StreamResponse:
        body, answer = await self._converse_body(request, "ConverseStream")
        if answer is not None:
            return answer
        blocks, stop_reason = self._converse_answer(body)
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        for index, block in enumerate(blocks):
            if "toolUse" in block:
                call = block["toolUse"]
                events.append(("contentBlockStart", {"start": {"toolUse": {"toolUseId": call["toolUseId"],
                                                                           "name": call["name"]}},
                                                     "contentBlockIndex": index}))
                raw = orjson.dumps(call["input"]).decode()
                events += [("contentBlockDelta", {"delta": {"toolUse": {"input": raw[i:i + 10]}},
                                                  "contentBlockIndex": index}) for i in range(0, len(raw), 10)]
            else:
                events += [("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": index})
                           for piece in word_pieces(block["text"])]
            events.append(("contentBlockStop", {"contentBlockIndex": index}))
        events.append(("messageStop", {"stopReason": stop_reason}))
        usage = self._usage(converse_input_tokens(body), output_tokens(blocks))
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream", **_request_id()})
        await resp.prepare(request)
        for i, (kind, payload) in enumerate([*events, ("metadata", {"usage": usage, "metrics": {}})]):
            if self.event_delay_s:
                await asyncio.sleep(self.event_delay_s)
            if i == self.die_after_events:
                assert request.transport is not None
                request.transport.close()
                return resp
            if i == self.error_after_events:
                message = ERROR_MESSAGES.get(self.stream_error[:1].upper() + self.stream_error[1:], self.stream_error)
                extra = {"originalStatusCode": 500, "originalMessage": message} \
                    if self.stream_error == "modelStreamErrorException" else {}
                await resp.write(eventstream_exception(self.stream_error, {"message": message, **extra}))
                break
            if kind == "metadata":
                payload = {**payload, "metrics": {"latencyMs": _latency(request)}}
            padded = {**payload, "p": _PADDING[: 1 + (i * 7) % len(_PADDING)]} if self.padding else payload
            await resp.write(eventstream_frame(kind, padded))
        await resp.write_eof()
        return resp

    # --- InvokeModel ------------------------------------------------------------------------------------------------

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        parsed, answer = await self._prelude(request, "invoke")
        if answer is not None:
            return answer
        if parsed is None:
            return aws_error("ValidationException", "Malformed input request, please reformat your input and try "
                                                    "again.")
        model = base_model_id(request.match_info["modelId"])
        if model.startswith("anthropic."):
            return self._invoke_anthropic(request, model, parsed)
        if model.startswith("amazon.titan-embed-text"):
            return self._invoke_titan(request, model, parsed)
        if model.startswith("cohere.embed"):
            return self._invoke_cohere(request, parsed)
        return aws_error("ValidationException", f"The fake Bedrock does not implement InvokeModel bodies for {model}; "
                                                f"use Converse.")

    def _invoke_response(self, request: web.Request, data: Any, input_tokens: int, output: int,
                         extra: Mapping[str, str] | None = None) -> web.Response:
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
                   "X-Amzn-Bedrock-Output-Token-Count": str(output),
                   "X-Amzn-Bedrock-Invocation-Latency": str(_latency(request)), **_request_id(), **(extra or {})}
        return web.Response(body=orjson.dumps(data), content_type="application/json", headers=headers)

    def _invoke_anthropic(self, request: web.Request, model: str, body: Any) -> web.Response:
        problem = native_problem(body, ANTHROPIC_FIELDS, ("anthropic_version", "max_tokens", "messages"))
        if problem is None and not all(isinstance(m.get("role"), str) and "content" in m for m in body["messages"]):
            problem = "Malformed input request: #/messages: each message requires role and content, please reformat " \
                      "your input and try again."
        if problem is None:
            problem = anthropic_check({key: value for key, value in body.items()
                                       if key not in ("anthropic_version", "anthropic_beta")})
        if problem is not None:
            return aws_error("ValidationException", problem)
        content, stop_reason, stop_sequence = self._anthropic_answer(body)
        input_tokens, output = anthropic_input_tokens(body), output_tokens(content)
        usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": self.cache_write,
                 "cache_read_input_tokens": self.cache_read, "output_tokens": output}
        name = re.sub(r"-v\d+(:\d+)?$", "", model.removeprefix("anthropic."))
        message = {"id": f"msg_bdrk_{token_urlsafe(18)}", "type": "message", "role": "assistant", "model": name,
                   "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage}
        extra = {header: str(count) for header, count in (
            ("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", self.cache_read),
            ("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", self.cache_write)) if count}
        return self._invoke_response(request, message, input_tokens, output, extra)

    def _anthropic_answer(self, body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
        tools = [t for t in body.get("tools") or [] if "name" in t]
        choice = body.get("tool_choice") or {"type": "auto"}
        last = body["messages"][-1]
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        text = " ".join(block.get("text", "") for block in content if block.get("type") == "text")
        answering = any(block.get("type") == "tool_result" for block in content)
        kind = choice.get("type")
        if tools and kind != "none" and (kind in ("any", "tool") or (not answering and _says_call(text))):
            spec = next((t for t in tools if t["name"] == choice.get("name")), None) or next(
                (t for t in tools if t["name"].lower() in text.lower()), tools[0])
            call = {"type": "tool_use", "id": f"toolu_bdrk_{token_urlsafe(18)}", "name": spec["name"],
                    "input": self.tool_input if self.tool_input is not None else example_input(
                        spec.get("input_schema"))}
            blocks = ([{"type": "text", "text": self.tool_preamble}] if self.tool_preamble else []) + [call]
            return blocks, self.stop_reason or "tool_use", None
        reply, reason, stop = _cut(self.reply, body["max_tokens"], body.get("stop_sequences") or [])
        return [{"type": "text", "text": reply}], self.stop_reason or reason or "end_turn", stop

    def _invoke_titan(self, request: web.Request, model: str, body: Any) -> web.Response:
        v2 = model.startswith("amazon.titan-embed-text-v2")
        problem = native_problem(body, TITAN_V2_FIELDS if v2 else TITAN_V1_FIELDS, ("inputText",))
        if problem is not None:
            return aws_error("ValidationException", problem)
        text = body["inputText"]
        vector = embedding_vector(text, body.get("dimensions", 1024) if v2 else 1536, body.get("normalize", True))
        tokens = text_tokens(text)
        data: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": tokens}
        if body.get("embeddingTypes"):
            data["embeddingsByType"] = {kind: vector if kind == "float" else [1 if v > 0 else 0 for v in vector]
                                        for kind in body["embeddingTypes"]}
        return self._invoke_response(request, data, tokens, 0)

    def _invoke_cohere(self, request: web.Request, body: Any) -> web.Response:
        problem = native_problem(body, COHERE_FIELDS, ("texts", "input_type"))
        if problem is not None:
            return aws_error("ValidationException", problem)
        texts: list[str] = body["texts"]
        vectors = [embedding_vector(text, 1024) for text in texts]
        kinds: list[str] | None = body.get("embedding_types")
        embeddings: Any = vectors if not kinds else {kind: [cohere_embeddings(v, kind) for v in vectors]
                                                      for kind in kinds}
        data = {"id": str(uuid.uuid4()), "embeddings": embeddings, "texts": texts,
                "response_type": "embeddings_by_type" if kinds else "embeddings_floats"}
        return self._invoke_response(request, data, sum(text_tokens(text) for text in texts), 0)


def _latency(request: web.Request) -> int:
    started = request.get(_STARTED, time.monotonic())
    return max(1, int((time.monotonic() - started) * 1000))


@asynccontextmanager
async def fake_bedrock(access_key: str = "AKIDEXAMPLE", secret_key: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                       session_token: str | None = None, region: str = "eu-central-1") -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock(access_key=access_key, secret_key=secret_key, session_token=session_token, region=region)
    service_model()
    runner = web.AppRunner(fake.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
