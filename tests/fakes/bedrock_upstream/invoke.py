"""InvokeModel: ``POST /model/{modelId}/invoke`` with the model's native body: Anthropic Messages, Titan Text
Embeddings, Cohere Embed; every answer carries Bedrock's token-count and latency headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from secrets import token_urlsafe
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.anthropic_upstream import check as anthropic_check
from tests.fakes.bedrock_upstream.embeddings import cohere_embeddings, embedding_vector
from tests.fakes.bedrock_upstream.errors import _request_id, aws_error
from tests.fakes.bedrock_upstream.models import base_model_id
from tests.fakes.bedrock_upstream.prelude import _latency, _Prelude
from tests.fakes.bedrock_upstream.replies import _cut, _says_call, example_input
from tests.fakes.bedrock_upstream.tokens import anthropic_input_tokens, output_tokens, text_tokens
from tests.fakes.bedrock_upstream.validation import (
    ANTHROPIC_FIELDS,
    COHERE_FIELDS,
    TITAN_V1_FIELDS,
    TITAN_V2_FIELDS,
    native_problem,
)


class _Invoke(_Prelude):
    """``FakeBedrock``'s InvokeModel endpoint."""

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
