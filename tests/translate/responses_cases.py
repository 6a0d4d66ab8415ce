"""What the Responses API translation tests share: ids, tool, usage and request, and the openai SDK as judge.

``completion`` is a chat completion the hub might answer with; ``as_response`` parses a Response as the SDK's
``openai.types.responses.Response``, which it must validate as (with no field the schema lacks: ``extras``) and come
back field for field; ``sdk_client`` is the openai SDK's own client over an in-memory transport, no socket, no event
loop.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import orjson
import pydantic
from openai.types.responses import Response

RID = "resp_0123abc"
WEATHER = {"type": "function", "name": "weather", "description": "Weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
         "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 12}}
RESPONSES_USAGE = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                   "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 150}


def completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None,
               logprobs: Any = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "gpt-x-2025",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
                         "logprobs": logprobs}], "usage": usage if usage is not None else USAGE}


def extras(value: Any, where: str = "") -> list[str]:
    """The fields a parsed SDK object holds that its schema does not name: typos, or fields the API lacks."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{where}.{k}" for k in (value.__pydantic_extra__ or {})]
        for name in type(value).model_fields:
            found += extras(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in extras(v, f"{where}[{i}]")]
    return []


def as_response(obj: dict[str, Any], where: str = "") -> Response:
    """``obj`` parsed as the SDK's ``Response``; it must come back field for field."""
    parsed = Response.model_validate(obj)
    # ``store`` is in the API's answers (and asked for here) though this SDK's schema no longer names it.
    assert extras(parsed, where) == [f"{where}.store"]
    assert parsed.to_dict(mode="json") == orjson.loads(orjson.dumps(obj))
    return parsed


REQUEST = {"model": "gpt-x", "input": "Hi", "instructions": "Be brief.", "tools": [WEATHER],
           "tool_choice": "auto", "temperature": 0.5, "max_output_tokens": 200, "metadata": {"team": "a"},
           "user": "u-1", "reasoning": {"effort": "low"}, "store": True}


def sdk_client(status: int, content_type: str, body: bytes) -> openai.OpenAI:
    """The openai SDK's client over an in-memory transport that answers every request with ``body``."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)
    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))
