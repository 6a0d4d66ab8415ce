"""The valid request bodies the fuzz tests of ``tests.edge.test_fuzz`` mutate, per inference endpoint.

Each body uses as many of its API's fields as the models it is sent to accept together (a 200 from each, streamed
and not, is checked before fuzzing), so mutations reach the validation and every translation of each field:
images, tool definitions with JSON schemas, tool calls and results, response formats, sampling fields. ``MODEL``
stands for the model: ``test_fuzz`` writes a route name in its place in the serialized body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MODEL = "@model"  # replaced, in the serialized body, by the model a mutation is sent to
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city"], "additionalProperties": False}
RICH_SCHEMA = {  # the JSON-schema keywords the schema translations (Gemini's above all) and the mock read
    "type": "object", "title": "Forecast", "description": "A forecast request", "additionalProperties": False,
    "required": ["city"], "$defs": {"detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}}},
    "properties": {
        "city": {"type": "string", "description": "The city", "minLength": 1, "maxLength": 64},
        "days": {"type": "integer", "minimum": 1, "maximum": 14}, "unit": {"enum": ["celsius", "fahrenheit"]},
        "when": {"type": "string", "format": "date"}, "where": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 0, "maxItems": 3},
        "detail": {"$ref": "#/$defs/detail"}}}

CHAT = {
    "model": MODEL, "stream": False, "max_tokens": 16, "temperature": 0.5, "top_p": 1, "stop": ["\n\n"],
    "user": "alice", "response_format": {"type": "text"}, "tool_choice": "auto", "stream_options": {
        "include_usage": True},
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this image?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "And tomorrow?"}],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "The weather in a city",
                                                "parameters": RICH_SCHEMA}}],
}
CHAT_JSON = {
    "model": MODEL, "stream": False, "max_completion_tokens": 16, "n": 1, "seed": 7,
    "presence_penalty": 0.1, "frequency_penalty": 0.1, "stop": "END",
    "tool_choice": {"type": "function", "function": {"name": "weather"}}, "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
    "messages": [{"role": "developer", "content": [{"type": "text", "text": "Answer in JSON."}]},
                 {"role": "user", "content": "Weather in Oslo?"}],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA, "strict": True}}],
}
CHAT_OPENAI_ONLY = {  # what only OpenAI itself (and the mock) takes
    "model": MODEL, "stream": False, "logprobs": True, "top_logprobs": 2, "logit_bias": {"50256": -100},
    "metadata": {"team": "fuzz"}, "store": False, "service_tier": "auto", "modalities": ["text"],
    "prediction": {"type": "content", "content": "It is sunny."}, "reasoning_effort": "low",
    "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "weather"}}]}},
    "messages": [{"role": "user", "name": "alice", "content": [
        {"type": "text", "text": "Weather?"}, {"type": "input_audio", "input_audio": {"data": "UklGRg==",
                                                                                      "format": "wav"}},
        {"type": "file", "file": {"filename": "a.txt", "file_data": "data:text/plain;base64,aGk="}}]}],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": SCHEMA}}],
}
RESPONSES = {
    "model": MODEL, "stream": False, "instructions": "Be brief.", "max_output_tokens": 16, "temperature": 0.5,
    "top_p": 1, "user": "alice", "store": False, "metadata": {"purpose": "fuzz"}, "tool_choice": "auto",
    "parallel_tool_calls": True, "reasoning": {"effort": "low"}, "text": {"verbosity": "low"},
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What is in this image?"},
                                     {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}",
                                      "detail": "low"}]},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
        {"role": "user", "content": "And tomorrow?"}],
    "tools": [{"type": "function", "name": "weather", "description": "The weather", "parameters": SCHEMA,
               "strict": False}],
}
RESPONSES_JSON = {
    "model": MODEL, "stream": False, "input": "Weather in Oslo as JSON",
    "text": {"format": {"type": "json_schema", "name": "city", "schema": RICH_SCHEMA, "strict": True}},
    "include": ["message.output_text.logprobs"], "top_logprobs": 2,
}
MESSAGES = {
    "model": MODEL, "stream": False, "max_tokens": 16, "temperature": 0.5, "top_p": 1, "stop_sequences": ["\n\n"],
    "metadata": {"user_id": "alice"}, "system": [{"type": "text", "text": "Be brief."}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": PNG}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}, {
            "type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [
            {"type": "text", "text": "sunny"}]}, {"type": "text", "text": "And tomorrow?"}]}],
    "tools": [{"name": "weather", "description": "The weather in a city", "input_schema": RICH_SCHEMA}],
}
MESSAGES_URL_IMAGE = {
    "model": MODEL, "stream": False, "max_tokens": 16, "system": "Be brief.",
    "tool_choice": {"type": "tool", "name": "weather"}, "tools": [{"name": "weather", "input_schema": SCHEMA}],
    "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "text", "text": "Where is this?"}]}],
}
COUNT_TOKENS = {k: v for k, v in MESSAGES.items() if k not in ("stream", "max_tokens", "temperature", "top_p",
                                                                 "stop_sequences", "metadata")}
EMBEDDINGS = {"model": MODEL, "input": ["hello", "world"], "encoding_format": "float", "user": "alice"}
EMBEDDINGS_IDS = {"model": MODEL, "input": "one text", "dimensions": 8, "encoding_format": "base64"}
COMPLETIONS = {"model": MODEL, "stream": False, "prompt": ["Say hi"], "max_tokens": 8, "temperature": 0.5,
               "n": 1, "stop": ["\n"], "best_of": 1, "logprobs": 0, "echo": False, "user": "alice",
               "stream_options": {"include_usage": True}}
MODERATIONS = {"model": MODEL, "input": [{"type": "text", "text": "hello"}, {
    "type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}
MODERATIONS_TEXT = {"model": MODEL, "input": ["hello", "world"]}

Dialect = Literal["openai", "anthropic"]
CHAT_MODELS = ("mock", "oai", "claude", "gemini", "nova", "bedrock-claude")


@dataclass(frozen=True)
class Base:
    """A valid body and the models it is valid for (by default all of its endpoint's)."""

    body: dict[str, Any]
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    path: str
    dialect: Dialect
    models: tuple[str, ...]
    bodies: tuple[dict[str, Any] | Base, ...]
    streams: bool = False

    @property
    def bases(self) -> list[Base]:
        return [b if isinstance(b, Base) else Base(b) for b in self.bodies]

    def models_of(self, base: Base) -> tuple[str, ...]:
        return base.models or self.models


ENDPOINTS = [
    Endpoint("/v1/chat/completions", "openai", CHAT_MODELS,
             (CHAT, CHAT_JSON, Base(CHAT_OPENAI_ONLY, ("mock", "oai"))), streams=True),
    Endpoint("/v1/responses", "openai", ("mock", "oai", "claude", "gemini", "nova"), (RESPONSES, RESPONSES_JSON),
             streams=True),
    Endpoint("/v1/messages", "anthropic", CHAT_MODELS, (MESSAGES, MESSAGES_URL_IMAGE), streams=True),
    Endpoint("/v1/messages/count_tokens", "anthropic", ("claude", "gemini", "mock", "oai"), (COUNT_TOKENS,)),
    Endpoint("/v1/embeddings", "openai", ("mock-embed", "oai-embed", "gemini-embed", "titan"),
             (EMBEDDINGS, EMBEDDINGS_IDS)),
    Endpoint("/v1/completions", "openai", ("mock", "oai"), (COMPLETIONS,), streams=True),
    Endpoint("/v1/moderations", "openai", ("mock-mod", "oai-mod"), (MODERATIONS, MODERATIONS_TEXT)),
]
