"""Outbound translation: the gateway calling AWS Bedrock Runtime for a hub request. Pure.

This module builds the requests; ``bedrock_to_hub`` translates the answers back, ``bedrock_embeddings`` holds the
embeddings bodies.

Which API a model is called with is the adapter's choice (``dataplane.upstream.adapters.bedrock``); the bodies and
answers are built here:

- **Converse** (``converse_request``, ``converse_completion``, ``ConverseChunkTranslator`` for ConverseStream):
  every chat model, Anthropic's streams included.

  - messages: ``system``/``developer`` → ``system`` text blocks; ``user``/``assistant`` text → ``text`` blocks
    (blank text dropped: Converse refuses it; a message left empty is dropped); images as base64 data URLs →
    ``image {format, source.bytes}`` (png, jpeg, gif, webp), remote URLs → ``Untranslatable`` (Converse takes image
    bytes or S3 locations only); assistant ``tool_calls`` → ``toolUse {toolUseId, name, input}``; ``tool`` messages →
    ``toolResult {toolUseId, content: [{text}]}`` in a user turn. Consecutive turns of one role merge into one
    (Converse alternates roles: consecutive tool results become one user turn), tool results first in their turn.
  - ``inferenceConfig``: ``maxTokens`` = ``max_completion_tokens``/``max_tokens`` capped at the deployment's
    ``max_output_tokens``, and set to it when the client gave none (the budget reservation counted that bound, so
    the upstream must be held to it); ``temperature`` (clamped to Converse's 0..1), ``topP``, ``stopSequences``.
  - ``toolConfig``: function tools → ``toolSpec {name, description, inputSchema.json}``; ``tool_choice`` auto →
    (default), ``required`` → ``any``, a function → ``tool``; ``none`` → no ``toolConfig`` at all, except when the
    history holds tool blocks (Converse then requires one): the tools are kept with the default choice, since
    Converse has no "none".
  - ``response_format`` ``json_schema`` (and ``json_object``, as the schema ``{"type": "object"}``) → one forced tool
    whose input schema is the response schema (the usual Converse pattern: every tool-capable model supports it,
    unlike ``outputConfig``); the tool's input comes back as the message ``content``, finish reason ``stop``, and text
    the model writes around the call is dropped. With ``tools`` as well it is ``Untranslatable`` (one forced tool
    cannot serve both). Models without forced tool choice (Llama) refuse it upstream (a 400 with Bedrock's message).
  - ``n`` > 1, legacy ``functions``, audio and file parts are ``Untranslatable``; sampling fields Converse has no
    counterpart for (penalties, seed, logprobs, ``user``) are ignored, as the Anthropic translation does.
  - answers: text blocks → ``content``, ``toolUse`` → ``tool_calls`` (arguments as JSON text); ``stopReason`` →
    ``finish_reason`` (``FINISH_REASONS``); ``usage`` → ``converse_usage``. Reasoning blocks have no hub field and
    are dropped. Converse answers carry no id: the adapter passes one.

- **InvokeModel with Anthropic's Messages body** (``invoke_anthropic_body``): ``hub_to_anthropic.anthropic_request``
  with ``anthropic_version: bedrock-2023-05-31`` and without ``model``, ``stream`` and ``metadata`` (Bedrock refuses
  them); answered by ``hub_to_anthropic.openai_completion``. Remote image URLs are ``Untranslatable`` here too.

- **Embeddings** (``embedding_model``, ``embedding_bodies``, ``embedding_vectors``, ``openai_embeddings``): Titan Text
  Embeddings v2 (``{inputText, dimensions}``, one text per call, ``dimensions`` 256, 512 or 1024) and v1 (1536
  dimensions), Cohere Embed (``{texts, input_type: "search_document"}``, at most ``COHERE_BATCH`` texts per call;
  OpenAI's API does not say whether a text is a query or a document, so every text is embedded as a document) →
  OpenAI's list answer, ``encoding_format: base64`` encoded here as OpenAI does (little-endian float32).

What cannot be translated is a value (``Untranslatable``), the caller's 400; a ConverseStream exception event is a
value too (``StreamError``). No exception escapes this module; no I/O, no clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from dataplane.translate.anthropic_common import Untranslatable, call_arguments, text_of
from dataplane.translate.hub_to_anthropic import anthropic_request

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Geographic cross-region inference profiles: ``eu.anthropic.claude-…`` is Anthropic's model, routed within the EU.
INFERENCE_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca"})
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                  "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                 "image/webp": "webp"}
JSON_TOOL = "json_response"  # the forced tool of a json_object response format (json_schema uses its own name)
COHERE_BATCH = 96  # Cohere Embed's limit of texts per call
TITAN_V2_DIMENSIONS = frozenset({256, 512, 1024})
_TOOL_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")

EmbeddingModel = Literal["titan-v1", "titan-v2", "cohere"]


# --- model ids ------------------------------------------------------------------------------------------------------

def base_model(model_id: str) -> str:
    """The foundation model a Bedrock model id names: an ARN's resource (``…:inference-profile/<id>``), without a
    geographic inference-profile prefix. An application inference profile's ARN names no model: returned as is."""
    if model_id.startswith("arn:"):
        model_id = model_id.split(":", 5)[-1].split("/", 1)[-1]
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in INFERENCE_PROFILE_PREFIXES and "." in rest else model_id


def is_anthropic(model_id: str) -> bool:
    return base_model(model_id).startswith("anthropic.")


def wants_json(payload: dict[str, Any]) -> bool:
    """Whether the request asks for a JSON response format (served by Converse's forced tool)."""
    rf = payload.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


# --- InvokeModel: Anthropic's Messages body -----------------------------------------------------------------------

def invoke_anthropic_body(payload: dict[str, Any], max_output_tokens: int) -> dict[str, Any] | Untranslatable:
    """The InvokeModel body of an Anthropic model on Bedrock for a hub chat payload (non-streamed)."""
    body = anthropic_request(payload, "", max_output_tokens, False)
    if isinstance(body, Untranslatable):
        return body
    for i, turn in enumerate(body["messages"]):
        for block in turn["content"]:
            if block.get("type") == "image" and block["source"].get("type") == "url":
                return Untranslatable("this model's provider (Bedrock) accepts images only as base64 data URLs",
                                      f"messages[{i}]")
    for name in ("model", "stream", "metadata"):
        body.pop(name, None)
    return {"anthropic_version": BEDROCK_ANTHROPIC_VERSION, **body}


# --- Converse: the request ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConverseCall:
    """A Converse (or ConverseStream) body, and the name of the tool forced to carry a JSON response, if any."""

    body: dict[str, Any]
    json_tool: str | None = None


def max_tokens(payload: dict[str, Any], max_output_tokens: int) -> int | None:
    """The client's output bound capped at the deployment's, else the deployment's (None: neither has one)."""
    asked = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if max_output_tokens > 0:
        return min(asked, max_output_tokens) if isinstance(asked, int) else max_output_tokens
    return asked if isinstance(asked, int) else None


def converse_request(payload: dict[str, Any], max_output_tokens: int) -> ConverseCall | Untranslatable:
    """The Converse body for an (already validated) hub chat payload; the model goes in the URL."""
    if (payload.get("n") or 1) != 1:
        return Untranslatable("this model's provider returns one choice per request: 'n' must be 1", "n")
    if payload.get("functions") is not None or payload.get("function_call") is not None:
        return Untranslatable("legacy 'functions' are not supported by this model's provider: use 'tools'",
                              "functions")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(payload["messages"]):
        role = m["role"]
        if role in ("system", "developer"):
            text = text_of(m.get("content"))
            if text.strip():
                system.append({"text": text})
            continue
        blocks = _blocks(m, f"messages[{i}]")
        if isinstance(blocks, Untranslatable):
            return blocks
        if not blocks:
            continue  # nothing Converse would accept (blank text): its neighbours merge around it
        turn_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        return Untranslatable("the conversation has no user or assistant content", "messages")
    history_uses_tools = False
    for turn in turns:
        results = [b for b in turn["content"] if "toolResult" in b]
        history_uses_tools = history_uses_tools or bool(results) or any("toolUse" in b for b in turn["content"])
        if results:  # tool results lead their user turn, as the models expect
            turn["content"] = results + [b for b in turn["content"] if "toolResult" not in b]
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    limit = max_tokens(payload, max_output_tokens)
    if limit is not None:
        inference["maxTokens"] = limit
    if payload.get("temperature") is not None:
        # OpenAI's range is 0..2, Converse's 0..1: clamp rather than fail a request another candidate accepts.
        inference["temperature"] = min(float(payload["temperature"]), 1.0)
    if payload.get("top_p") is not None:
        inference["topP"] = payload["top_p"]
    stop = payload.get("stop")
    stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if s]
    if stops:
        inference["stopSequences"] = stops
    if inference:
        body["inferenceConfig"] = inference
    config = _tool_config(payload, history_uses_tools)
    if isinstance(config, Untranslatable):
        return config
    tool_config, json_tool = config
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return ConverseCall(body, json_tool)


def _blocks(m: dict[str, Any], where: str) -> list[dict[str, Any]] | Untranslatable:
    """The Converse content blocks of one user, assistant or tool message."""
    role, content = m["role"], m.get("content")
    if role == "function":
        return Untranslatable("legacy 'function' messages are not supported by this model's provider: use 'tool'",
                              f"{where}.role")
    if role == "tool":
        if not isinstance(m.get("tool_call_id"), str) or not m["tool_call_id"]:
            return Untranslatable(f"'{where}.tool_call_id' is required for tool messages", f"{where}.tool_call_id")
        text = text_of(content)
        return [{"toolResult": {"toolUseId": m["tool_call_id"], "content": [{"text": text}] if text.strip() else []}}]
    blocks: list[dict[str, Any]] = []
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    for j, part in enumerate(parts):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text.strip():
                blocks.append({"text": text})
        elif kind == "image_url" and role == "user":
            image = _image_block(part)
            if isinstance(image, str):
                return Untranslatable(f"'{where}.content[{j}]': {image}", f"{where}.content[{j}]")
            blocks.append(image)
        else:
            return Untranslatable(f"'{where}.content[{j}]': parts of type {kind!r} are not supported by this "
                                  f"model's provider", f"{where}.content[{j}]")
    for j, call in enumerate((m.get("tool_calls") or []) if role == "assistant" else []):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            return Untranslatable(f"'{where}.tool_calls[{j}]' must be a function call with an id and a name",
                                  f"{where}.tool_calls[{j}]")
        arguments = call_arguments(fn)
        if arguments is None:
            return Untranslatable(f"'{where}.tool_calls[{j}].function.arguments' must be a JSON object",
                                  f"{where}.tool_calls[{j}].function.arguments")
        blocks.append({"toolUse": {"toolUseId": call["id"], "name": fn["name"], "input": arguments}})
    return blocks


def _image_block(part: dict[str, Any]) -> dict[str, Any] | str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        return "image_url.url must be a string"
    if not url.startswith("data:"):
        return "this model's provider (Bedrock) accepts images only as base64 data URLs ('data:image/png;base64,...')"
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not data:
        return "image data URLs must look like 'data:<media type>;base64,<data>'"
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        return f"images of type {media_type!r} are not supported by this model's provider (png, jpeg, gif, webp)"
    # A JSON blob is base64 text: the data URL's payload is already in the wire form.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _tool_config(payload: dict[str, Any], history_uses_tools: bool
                 ) -> tuple[dict[str, Any] | None, str | None] | Untranslatable:
    """The ``toolConfig`` (None: none) and the forced JSON tool's name (None: not in JSON mode)."""
    specs: list[dict[str, Any]] = []
    for j, t in enumerate(payload.get("tools") or []):
        fn = t.get("function")
        if t.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return Untranslatable("only function tools with a name are supported by this model's provider",
                                  f"tools[{j}]")
        spec: dict[str, Any] = {"name": fn["name"],
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if isinstance(fn.get("description"), str) and fn["description"].strip():
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    if wants_json(payload):
        if specs:
            return Untranslatable("a JSON response_format together with tools is not supported by this model's "
                                  "provider", "response_format")
        forced = _json_tool(payload["response_format"])
        if isinstance(forced, Untranslatable):
            return forced
        return {"tools": [{"toolSpec": forced}], "toolChoice": {"tool": {"name": forced["name"]}}}, forced["name"]
    if not specs:
        return None, None
    choice = payload.get("tool_choice")
    config: dict[str, Any] = {"tools": specs}
    if choice is None or choice == "auto":
        pass
    elif choice == "none":
        if not history_uses_tools:
            return None, None
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    else:
        return Untranslatable("'tool_choice' must be 'auto', 'required', 'none' or a function", "tool_choice")
    return config, None


def _json_tool(response_format: dict[str, Any]) -> dict[str, Any] | Untranslatable:
    """The tool spec a JSON response format is forced through."""
    if response_format["type"] == "json_object":
        return {"name": JSON_TOOL, "description": "Respond with a JSON object.",
                "inputSchema": {"json": {"type": "object"}}}
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return Untranslatable("'response_format.json_schema' must be an object", "response_format.json_schema")
    schema = spec.get("schema") or {"type": "object"}
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return Untranslatable("this model's provider can only produce JSON objects: the response schema's type must "
                              "be 'object'", "response_format.json_schema.schema")
    name = _TOOL_NAME_CHARS.sub("_", str(spec.get("name") or ""))[:64] or JSON_TOOL
    description = spec.get("description")
    return {"name": name, "description": description if isinstance(description, str) and description.strip()
            else "Respond with a JSON object matching the schema.", "inputSchema": {"json": schema}}
