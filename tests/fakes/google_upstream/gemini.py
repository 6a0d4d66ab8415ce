"""The fake Gemini API (``FakeGemini``, started by ``fake_gemini``): the API key, Gemini's own quota, internal
and overload errors, countTokens, embedContent and batchEmbedContents; the generation is ``_Upstream``'s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.google_upstream.errors import INVALID_API_KEY, UNREGISTERED_CALLER, _error_info, _json, google_error
from tests.fakes.google_upstream.tokens import embedding_values, prompt_token_details, prompt_tokens
from tests.fakes.google_upstream.upstream import _content_text, _serve, _Upstream


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


@asynccontextmanager
async def fake_gemini(api_key: str = "AIza-fake-gemini-key") -> AsyncIterator[FakeGemini]:
    fake = FakeGemini(api_key=api_key)
    runner, fake.base_url = await _serve(fake.app())
    try:
        yield fake
    finally:
        await runner.cleanup()
