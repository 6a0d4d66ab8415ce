"""Adapters for Google's Gemini models: the Gemini API (``gemini``) and Vertex AI (``vertex``). Hub requests in, hub
answers out; the bodies and answers are translated by ``dataplane.translate.hub_to_gemini``, the same for both.

Endpoints (``{base_url}`` is the origin; ``{model}`` the deployment's upstream model, percent-quoted):

- ``GeminiAdapter``: ``{base_url}/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
  ``:countTokens`` and ``:batchEmbedContents``, with the provider's key in ``x-goog-api-key`` (never in the URL,
  where access logs would keep it).
- ``VertexAdapter``: ``{base_url}/v1/projects/{gcp_project}/locations/{gcp_location}/publishers/google/models/
  {model}:generateContent`` (and ``:streamGenerateContent?alt=sse``, ``:countTokens``, ``:predict`` for the
  text-embedding models), with ``Authorization: Bearer <access token>`` from ``google_auth.AccessTokens`` (refreshed
  ahead of expiry, off the request path). A token Google refuses (401) is dropped and the request sent once more
  with a fresh one.

Streams are Google's SSE (``data: <chunk>`` frames ended by CRLF CRLF, which ``upstream.sse`` parses), translated
chunk by chunk; the stream ends (``LastBatch``) with the chunk that finishes every candidate and the usage chunk
after it. A stream that ends before that is cut (``protocol``), one whose connection dies mid-way fails as
``connect`` (``wire.SseBatches``), an error object inside it fails as its status says.

Failures, translated here and nowhere else, from Google's ``{"error": {"code", "message", "status", "details"}}``:

- 429 (``RESOURCE_EXHAUSTED``) → ``429``, with ``RetryInfo.retryDelay`` as the client's ``Retry-After``;
- 5xx (``INTERNAL``, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``) → ``5xx``;
- 401/403, and the Gemini API's 400 ``API_KEY_INVALID`` (a wrong key is a 400 there) → ``auth``, body dropped: the
  client gets a 502 naming the provider, never the key;
- 404 → ``unsupported`` (no such model there: a fault of policy, so the next candidate is tried);
- other 4xx (``INVALID_ARGUMENT``, ``FAILED_PRECONDITION``) → ``4xx`` with Google's message in OpenAI's error
  envelope (``code``: Google's status in lower case), scrubbed of the API key and access tokens;
- a prompt Google blocked (``promptFeedback.blockReason``) → ``4xx``: 400 with code ``content_filter``;
- a request the translation refuses → ``4xx``: 400 ``unsupported_parameter`` naming the field.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import orjson

from dataplane.core.validate import HubRequest
from dataplane.errors import FailureKind, UpstreamFailure, error_body
from dataplane.snapshot.runtime import Deployment, Provider
from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.gemini_embeddings import (
    count_tokens_body,
    embedding_texts,
    estimated_embedding_tokens,
    gemini_embedding_bodies,
    gemini_embedding_vectors,
    input_tokens,
    openai_embeddings,
    vertex_embedding_bodies,
    vertex_embedding_vectors,
)
from dataplane.translate.gemini_to_hub import GeminiChunkTranslator, openai_completion
from dataplane.translate.hub_to_gemini import Blocked, gemini_request
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.event_stream import Feed, flatten, json_events, translated_batches
from dataplane.upstream.adapters.google_auth import AccessTokens
from dataplane.upstream.adapters.wire import SseBatches, check_credential, header_lines, post, read_whole
from dataplane.upstream.client import Response, UpstreamClient

GEMINI_API_VERSION = "v1beta"
VERTEX_API_VERSION = "v1"
EMBED_CONCURRENCY = 4  # embedding calls of one request in flight at once
_AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED",
                           "API_KEY_IP_ADDRESS_BLOCKED", "ACCESS_TOKEN_EXPIRED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"})
_STREAM_KINDS: dict[str, FailureKind] = {"RESOURCE_EXHAUSTED": "429", "INTERNAL": "5xx", "UNAVAILABLE": "5xx",
                                         "DEADLINE_EXCEEDED": "5xx", "500": "5xx", "503": "5xx", "429": "429"}

T = TypeVar("T")


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _error_of(body: bytes) -> dict[str, Any]:
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):  # some endpoints wrap it in a list
        error = parsed[0].get("error")
    return error if isinstance(error, dict) else {}


def _details(error: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict) and str(d.get("@type", "")).endswith(kind)] \
        if isinstance(details, list) else []


def retry_delay(error: dict[str, Any]) -> float | None:
    """Seconds of ``RetryInfo.retryDelay`` (a protobuf Duration in JSON: ``"17s"``, ``"0.5s"``), if present."""
    for info in _details(error, "google.rpc.RetryInfo"):
        delay = info.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def status_failure(status: int, body: bytes, provider: Provider, secrets: Iterable[str] = ()) -> UpstreamFailure:
    error = _error_of(body)
    google_status = str(error.get("status") or "")
    where = f"provider {provider.name!r} answered HTTP {status}" + (f" {google_status}" if google_status else "")
    reasons = {str(d.get("reason")) for d in _details(error, "google.rpc.ErrorInfo")}
    if status == 429:
        return UpstreamFailure("429", where, status, retry_after_s=retry_delay(error))
    if status >= 500:
        return UpstreamFailure("5xx", where, status)
    if status in (401, 403) or reasons & _AUTH_REASONS:
        return UpstreamFailure("auth", f"{where}: the gateway's credential was refused", status)
    if status == 404:
        return UpstreamFailure("unsupported", f"{where}: the upstream model does not exist there", status)
    message = scrub(str(error.get("message") or f"provider {provider.name!r} refused the request"), secrets)
    return UpstreamFailure("4xx", where, status, error_body(message, "invalid_request_error",
                                                            google_status.lower() or "invalid_argument"))


def _refused(body: Untranslatable) -> UpstreamFailure:
    return UpstreamFailure("4xx", body.message, 400, error_body(body.message, "invalid_request_error",
                                                                "unsupported_parameter", body.param))


def blocked_failure(refusal: Blocked, provider: Provider) -> UpstreamFailure:
    """A prompt Google refused: the client's 400 ``content_filter``, never an empty answer."""
    message = f"the prompt was blocked by the provider's content filter ({refusal.reason})"
    if refusal.message:
        message += f": {refusal.message}"
    return UpstreamFailure("4xx", f"provider {provider.name!r} blocked the prompt ({refusal.reason})", 400,
                           error_body(message, "invalid_request_error", "content_filter", "messages"))


def _json(raw: bytes, provider: Provider) -> dict[str, Any]:
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed answer")
    return parsed


def _stream(translator: GeminiChunkTranslator, provider: Provider,
            secrets: Callable[[], Iterable[str]]) -> tuple[Feed, Callable[[StreamError], UpstreamFailure]]:
    """The event feed (a blocked prompt mid-stream fails at once) and the mid-stream failure of a Google stream."""
    def feed(event: dict[str, Any]) -> list[bytes] | StreamError:
        result = translator.feed(event)
        if isinstance(result, Blocked):
            raise blocked_failure(result, provider)
        return result

    def fail(error: StreamError) -> UpstreamFailure:
        return UpstreamFailure(_STREAM_KINDS.get(error.type, "protocol"),
                               f"provider {provider.name!r} failed mid-stream ({error.type}): "
                               f"{scrub(error.message, secrets())}")
    return feed, fail


async def _gather(calls: list[Awaitable[T]]) -> list[T]:
    """All the calls' results in order, at most ``EMBED_CONCURRENCY`` at once; the first failure cancels the rest."""
    gate = asyncio.Semaphore(EMBED_CONCURRENCY)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    tasks = [asyncio.ensure_future(one(c)) for c in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class _GoogleAdapter:
    """What both APIs share: the chat, streaming and counting paths. Subclasses say where and how to send."""

    vertex: ClassVar[bool] = False

    def __init__(self, client: UpstreamClient, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        check_credential(deployment.provider)
        if request.surface == "chat":
            return await self._chat(deployment, request, timeout_s)
        if request.surface == "embeddings":
            return await self._embeddings(deployment, request, timeout_s)
        if request.surface == "count_tokens":
            return await self._count_tokens(deployment, request, timeout_s)
        raise UpstreamFailure("unsupported", f"provider {deployment.provider.name!r} ({deployment.provider.type}) "
                                             f"has no {request.surface} endpoint")

    async def _chat(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        body = gemini_request(request.payload, deployment.max_output_tokens, deployment.upstream_model)
        if isinstance(body, Untranslatable):
            raise _refused(body)
        seed, created = uuid.uuid4().hex[:16], int(self._clock())
        if not request.stream:
            answer = await self._call(deployment, "generateContent", body, timeout_s)
            completion = openai_completion(answer, created, deployment.upstream_model, seed)
            if isinstance(completion, Blocked):
                raise blocked_failure(completion, provider)
            return Complete(orjson.dumps(completion))
        resp, _ = await self._post(deployment, "streamGenerateContent", body, timeout_s, "?alt=sse")
        n = request.payload.get("n")
        translator = GeminiChunkTranslator(created=created, model=deployment.upstream_model, call_seed=seed,
                                           candidates=n if isinstance(n, int) and n > 1 else 1)
        feed, fail = _stream(translator, provider, lambda: self._secrets(provider))
        batches = translated_batches(json_events(SseBatches(resp, provider), provider), feed,
                                     lambda: translator.finished, fail,
                                     f"provider {provider.name!r} ended the stream before its finishReason")
        return Stream(flatten(batches), resp.close, batches)

    async def _count_tokens(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        """Google's own count (exact) of the prompt: ``{"input_tokens": N}``, the client's dialect."""
        body = count_tokens_body(request.payload, deployment.upstream_model, self.vertex)
        if isinstance(body, Untranslatable):
            raise _refused(body)
        counted = input_tokens(await self._call(deployment, "countTokens", body, timeout_s))
        if counted is None:
            raise UpstreamFailure("protocol", f"provider {deployment.provider.name!r} sent a malformed count")
        return Complete(orjson.dumps(counted), native=True)

    async def _embeddings(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        raise NotImplementedError

    async def _call(self, deployment: Deployment, method: str, body: dict[str, Any],
                    timeout_s: float) -> dict[str, Any]:
        """POST a JSON body, read the JSON answer whole."""
        resp, deadline = await self._post(deployment, method, body, timeout_s)
        return _json(await read_whole(resp, deployment.provider, deadline), deployment.provider)

    async def _post(self, deployment: Deployment, method: str, body: dict[str, Any], timeout_s: float,
                    query: str = "") -> tuple[Response, float]:
        provider = deployment.provider
        url = self._url(deployment, method) + query
        return await post(self._client, provider, url, header_lines(await self._headers(provider, bool(query))),
                          orjson.dumps(body), timeout_s, self._status_failure)

    def _status_failure(self, status: int, body: bytes, provider: Provider) -> UpstreamFailure:
        return status_failure(status, body, provider, self._secrets(provider))

    def _url(self, deployment: Deployment, method: str) -> str:
        raise NotImplementedError

    async def _headers(self, provider: Provider, stream: bool) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json",
                "Accept-Encoding": "identity", "User-Agent": "tollway"}

    def _secrets(self, provider: Provider) -> tuple[str, ...]:
        return (provider.credential,) if provider.credential else ()


def _model(deployment: Deployment) -> str:
    return quote(deployment.upstream_model.removeprefix("models/"), safe="")


class GeminiAdapter(_GoogleAdapter):
    """The Gemini API (``generativelanguage.googleapis.com``) with an API key. Task-safe: holds only the shared
    upstream client (owned and closed by the application) and a clock."""

    def _url(self, deployment: Deployment, method: str) -> str:
        return f"{deployment.provider.base_url}/{GEMINI_API_VERSION}/models/{_model(deployment)}:{method}"

    async def _headers(self, provider: Provider, stream: bool) -> dict[str, str]:
        headers = await super()._headers(provider, stream)
        if provider.credential:
            headers["x-goog-api-key"] = provider.credential
        return headers

    async def _embeddings(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        """``:batchEmbedContents``; Google reports no token counts, so the usage is the translation's estimate."""
        texts = embedding_texts(request.payload)
        if isinstance(texts, Untranslatable):
            raise _refused(texts)
        bodies = gemini_embedding_bodies(request.payload, deployment.upstream_model,
                                         deployment.embedding_dimensions)
        if isinstance(bodies, Untranslatable):
            raise _refused(bodies)

        async def embed(body: dict[str, Any]) -> list[list[float]]:
            answer = await self._call(deployment, "batchEmbedContents", body, timeout_s)
            vectors = gemini_embedding_vectors(answer, len(body["requests"]))
            if vectors is None:
                raise UpstreamFailure("protocol", f"provider {deployment.provider.name!r} sent malformed embeddings")
            return vectors

        vectors = [v for batch in await _gather([embed(b) for b in bodies]) for v in batch]
        answer = openai_embeddings(vectors, estimated_embedding_tokens(texts), deployment.upstream_model,
                                   request.payload.get("encoding_format"))
        return Complete(orjson.dumps(answer))


class VertexAdapter(_GoogleAdapter):
    """Vertex AI's Gemini (and text-embedding) models with a service account's or ADC's access tokens. Holds the
    shared upstream client, a clock and the token cache (``AccessTokens``, its only mutable state: one event
    loop); ``aclose`` cancels token refreshes in flight."""

    vertex = True

    def __init__(self, client: UpstreamClient, clock: Callable[[], float] = time.time,
                 tokens: AccessTokens | None = None) -> None:
        super().__init__(client, clock)
        self._tokens = tokens if tokens is not None else AccessTokens()

    async def aclose(self) -> None:
        await self._tokens.aclose()

    def _url(self, deployment: Deployment, method: str) -> str:
        p = deployment.provider
        if not p.gcp_project or not p.gcp_location:
            raise UpstreamFailure("unsupported", f"provider {p.name!r} (Vertex AI) has no gcp_project and "
                                                 "gcp_location")
        return (f"{p.base_url}/{VERTEX_API_VERSION}/projects/{quote(p.gcp_project, safe='')}/locations/"
                f"{quote(p.gcp_location, safe='')}/publishers/google/models/{_model(deployment)}:{method}")

    async def _post(self, deployment: Deployment, method: str, body: dict[str, Any], timeout_s: float,
                    query: str = "") -> tuple[Response, float]:
        provider = deployment.provider
        url, payload = self._url(deployment, method) + query, orjson.dumps(body)
        token = await self._tokens.get(provider)
        try:
            return await self._send_with(token, provider, url, payload, timeout_s, bool(query))
        except UpstreamFailure as failure:
            if failure.kind != "auth" or failure.status != 401:
                raise
        # A token Google no longer takes (revoked, or expired early): once more with a fresh one.
        self._tokens.invalidate(provider, token)
        token = await self._tokens.get(provider)
        return await self._send_with(token, provider, url, payload, timeout_s, bool(query))

    async def _send_with(self, token: str, provider: Provider, url: str, payload: bytes, timeout_s: float,
                         stream: bool) -> tuple[Response, float]:
        headers = await self._headers(provider, stream)
        headers["Authorization"] = f"Bearer {token}"
        return await post(self._client, provider, url, header_lines(headers), payload, timeout_s,
                          self._status_failure)

    def _secrets(self, provider: Provider) -> tuple[str, ...]:
        return (*super()._secrets(provider), *self._tokens.secrets())

    async def _embeddings(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        """``:predict`` (text-embedding models); the token counts are Vertex's ``statistics.token_count``."""
        bodies = vertex_embedding_bodies(request.payload, deployment.upstream_model,
                                         deployment.embedding_dimensions)
        if isinstance(bodies, Untranslatable):
            raise _refused(bodies)

        async def embed(body: dict[str, Any]) -> tuple[list[list[float]], int]:
            answer = await self._call(deployment, "predict", body, timeout_s)
            result = vertex_embedding_vectors(answer, len(body["instances"]))
            if result is None:
                raise UpstreamFailure("protocol", f"provider {deployment.provider.name!r} sent malformed embeddings")
            return result

        results = await _gather([embed(b) for b in bodies])
        vectors = [v for batch, _ in results for v in batch]
        answer = openai_embeddings(vectors, sum(tokens for _, tokens in results), deployment.upstream_model,
                                   request.payload.get("encoding_format"))
        return Complete(orjson.dumps(answer))
