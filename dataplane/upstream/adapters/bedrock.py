"""Adapter for AWS Bedrock Runtime: hub requests in, hub answers out, signed with botocore's SigV4.

Which API serves what (the bodies and answers are translated by ``dataplane.translate.hub_to_bedrock``):

- chat on Anthropic models (``anthropic.*``, also behind ``eu.``/``us.``/``apac.``/``global.``… inference profiles),
  non-streamed: ``POST {base_url}/model/{id}/invoke`` with Anthropic's Messages body, answered like the Anthropic
  adapter answers (``hub_to_anthropic.openai_completion``); except a JSON ``response_format``, which only the
  Converse translation serves (a forced tool);
- every other chat request, and every stream: ``POST /model/{id}/converse`` and ``/converse-stream``;
- embeddings: ``POST /model/{id}/invoke`` with Titan's body (one call per text, at most ``EMBED_CONCURRENCY`` in
  flight, token counts summed) or Cohere's (one call per ``COHERE_BATCH`` texts, counted by the
  ``X-Amzn-Bedrock-Input-Token-Count`` header); other embedding models are ``unsupported``.

Model ids go into the path percent-quoted (``:`` and the ``/`` of ARNs included), and the request is signed for
exactly the URL, headers and body bytes then sent over the lean ``UpstreamClient``.

Credentials: botocore's standard chain (environment, shared config and credentials files and their profiles,
SSO, container and instance roles) for ``provider.aws_profile`` (empty: the default), resolved off the event loop
(``asyncio.to_thread``: the chain may read files or call a metadata endpoint) and cached per (profile, region) in
the adapter instance, ``CredentialCache`` (``aws_auth``), the adapter's only mutable state. Temporary
credentials are refreshed off the loop once they expire within ``aws_auth.REFRESH_BEFORE_S``; finding none is an
``auth`` failure, looked for again after ``aws_auth.MISS_RETRY_S``. A provider with ``credential_env`` sends that
variable's value as a Bedrock API key (``Authorization: Bearer``) instead. No credential is ever in policy,
snapshots, logs or error messages: the secret key, the session token (and, as it names the AWS account to tenants,
the key id) are scrubbed from every upstream message a client may see, and botocore's DEBUG record of the
canonical request, which holds the session token, is dropped (``_CanonicalRequestFilter``).

Failures, translated here and nowhere else, by ``x-amzn-ErrorType`` first and the status second:
``ThrottlingException``, ``ServiceQuotaExceededException`` → ``429``; ``ServiceUnavailableException``,
``ModelNotReadyException``, ``InternalServerException``, ``ModelErrorException`` (424), any 5xx → ``5xx``;
``ModelTimeoutException`` (408) → ``timeout``; ``AccessDeniedException``, ``UnrecognizedClientException``, the
signature errors, ``ExpiredTokenException``, 401/403 → ``auth`` (body dropped); ``ResourceNotFoundException``,
404 → ``unsupported`` (a fault of policy: the next candidate is tried, the client gets a 502); other 4xx
(``ValidationException``) → ``4xx`` with Bedrock's ``message`` in OpenAI's error envelope. In a stream, the
binary event-stream framing is decoded by botocore's ``EventStreamBuffer``; an exception frame fails the stream
(``throttlingException`` → ``429``; ``modelStreamErrorException``, ``internalServerException``,
``serviceUnavailableException`` → ``5xx``; ``validationException`` → ``protocol``), as does a stream that ends
before its ``metadata`` event (``protocol``) or a connection lost mid-stream (``connect``).

botocore is imported where it is first used: a data plane with no Bedrock provider never loads it (about 7 MB of
memory per worker).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import orjson

from dataplane.core.validate import HubRequest
from dataplane.errors import FailureKind, UpstreamFailure, error_body
from dataplane.snapshot.runtime import Deployment, Provider
from dataplane.translate.anthropic_common import StreamError, Untranslatable
from dataplane.translate.bedrock_embeddings import (
    embedding_bodies,
    embedding_model,
    embedding_vectors,
    openai_embeddings,
    titan_tokens,
)
from dataplane.translate.bedrock_to_hub import ConverseChunkTranslator, converse_completion
from dataplane.translate.hub_to_anthropic import openai_completion
from dataplane.translate.hub_to_bedrock import (
    EmbeddingModel,
    converse_request,
    invoke_anthropic_body,
    is_anthropic,
    wants_json,
)
from dataplane.upstream.adapters import Complete, Stream
from dataplane.upstream.adapters.aws_auth import AwsCredentials, CredentialCache, where
from dataplane.upstream.adapters.event_stream import flatten, translated_batches
from dataplane.upstream.adapters.wire import MAX_ERROR_BODY, check_credential, header_lines, map_failures, read_whole
from dataplane.upstream.client import Response, UpstreamClient
from dataplane.upstream.sse import MAX_EVENT_BYTES

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
JSON = "application/json"
EVENT_STREAM = "application/vnd.amazon.eventstream"
EMBED_CONCURRENCY = 8  # Titan calls in flight per request: one per text, so a 2048-text request stays polite

_THROTTLED = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})
_UNAVAILABLE = frozenset({"ServiceUnavailableException", "ModelNotReadyException", "InternalServerException",
                          "ModelErrorException", "InternalFailure", "ServiceUnavailable"})
_AUTH = frozenset({"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                   "IncompleteSignatureException", "MissingAuthenticationTokenException", "ExpiredTokenException",
                   "InvalidClientTokenId", "SignatureDoesNotMatch"})
_NOT_FOUND = frozenset({"ResourceNotFoundException", "UnknownOperationException"})
_STREAM_FAILURES: dict[str, FailureKind] = {
    "throttlingException": "429", "modelStreamErrorException": "5xx", "internalServerException": "5xx",
    "serviceUnavailableException": "5xx", "validationException": "protocol"}

T = TypeVar("T")


class _CanonicalRequestFilter(logging.Filter):
    """Drops botocore's DEBUG records of the canonical request and string to sign: the canonical request holds
    the ``X-Amz-Security-Token`` header, so a data plane run at DEBUG would log the session token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(("CanonicalRequest:", "StringToSign:")))


def _quiet_signing_logs() -> None:
    logger = logging.getLogger("botocore.auth")
    if not any(isinstance(f, _CanonicalRequestFilter) for f in logger.filters):
        logger.addFilter(_CanonicalRequestFilter())


# --- failures -----------------------------------------------------------------------------------------------------

def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def error_type(header: str, body: Any) -> str:
    """The AWS error's type: ``x-amzn-ErrorType`` (``Type:uri`` on some paths), else the body's ``__type``."""
    raw = header or (str(body.get("__type", "")) if isinstance(body, dict) else "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def status_failure(status: int, kind_header: str, body: bytes, provider: Provider,
                   secrets: Iterable[str]) -> UpstreamFailure:
    """An error answer of Bedrock as an ``UpstreamFailure``."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    aws_type = error_type(kind_header, parsed)
    where = f"provider {provider.name!r} answered HTTP {status}" + (f" ({aws_type})" if aws_type else "")
    if aws_type in _THROTTLED or (status == 429 and aws_type not in _UNAVAILABLE):
        return UpstreamFailure("429", where, status)
    if aws_type in _UNAVAILABLE or status >= 500:
        return UpstreamFailure("5xx", where, status)
    if aws_type == "ModelTimeoutException" or status == 408:
        return UpstreamFailure("timeout", where, status)
    if aws_type in _AUTH or status in (401, 403):
        return UpstreamFailure("auth", f"{where}: the gateway's AWS credentials were refused", status)
    if aws_type in _NOT_FOUND or status == 404:
        return UpstreamFailure("unsupported", f"{where}: the model does not exist there or is not enabled", status)
    message = parsed.get("message") or parsed.get("Message") if isinstance(parsed, dict) else None
    text = scrub(str(message), secrets) if message else f"provider {provider.name!r} refused the request"
    return UpstreamFailure("4xx", where, status, error_body(text, "invalid_request_error", aws_type or None))


def _refused(body: Untranslatable) -> UpstreamFailure:
    return UpstreamFailure("4xx", body.message, 400, error_body(body.message, "invalid_request_error",
                                                                "unsupported_parameter", body.param))


# --- streams ------------------------------------------------------------------------------------------------------

def _event(message: Any, provider: Provider) -> dict[str, Any]:
    """One decoded frame as ``{event or exception type: payload}``."""
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "error":
        raise UpstreamFailure("5xx", f"provider {provider.name!r} failed mid-stream ({headers.get(':error-code')})")
    name = headers.get(":event-type" if kind == "event" else ":exception-type")
    try:
        payload = orjson.loads(message.payload) if message.payload else {}
    except orjson.JSONDecodeError:
        raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed event") from None
    return {str(name): payload}


async def _events(resp: Response, provider: Provider,
                  translator: ConverseChunkTranslator) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The decoded frames of the event stream, one group per read (botocore's parser, never our own)."""
    from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]

    frames = EventStreamBuffer()
    pending = 0  # bytes buffered towards the next frame: bounded like an SSE event (botocore allows 24 MiB)
    try:
        with map_failures(provider, mid_answer=True):
            while True:
                data = await resp.read_some()
                if not data:
                    return
                frames.add_data(data)
                try:
                    messages = list(frames)
                except ParserError:
                    raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed event "
                                                      "stream") from None
                pending += len(data) - sum(m.prelude.total_length for m in messages)
                if pending > MAX_EVENT_BYTES:
                    raise UpstreamFailure("protocol", f"provider {provider.name!r} sent an event larger than "
                                                      f"{MAX_EVENT_BYTES} bytes")
                yield [_event(message, provider) for message in messages]
    finally:
        # Finished at the metadata event: the body's end follows, and the connection may carry another request.
        if translator.finished or resp.body_done:
            resp.release()
        else:
            resp.close()


def _chunks(resp: Response, provider: Provider, translator: ConverseChunkTranslator,
            secrets: tuple[str, ...]) -> AsyncGenerator[list[bytes], None]:
    """Hub chunk payloads, one group per read of the event stream; the last group is a ``LastBatch``."""
    def fail(error: StreamError) -> UpstreamFailure:
        return UpstreamFailure(_STREAM_FAILURES.get(error.type, "5xx"),
                               f"provider {provider.name!r} failed mid-stream ({error.type}): "
                               f"{scrub(error.message, secrets)}")
    return translated_batches(_events(resp, provider, translator), translator.feed, lambda: translator.finished,
                              fail, f"provider {provider.name!r} ended the stream before its metadata event")


async def _all(calls: list[Awaitable[T]]) -> list[T]:
    """Every call's result in order; the first failure cancels the others (their connections are closed)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


# --- the adapter --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Signer:
    """How one request is authenticated: SigV4 with ``credentials``, or a Bedrock API key (``bearer``)."""

    region: str
    credentials: AwsCredentials | None = None
    bearer: str | None = field(default=None, repr=False)

    def secrets(self) -> tuple[str, ...]:
        return (self.bearer,) if self.bearer else self.credentials.secrets() if self.credentials else ()


class BedrockAdapter:
    """Task-safe on one event loop: holds the shared upstream client (owned and closed by the application), a
    clock, and the credential cache."""

    def __init__(self, client: UpstreamClient, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock
        self._credentials = CredentialCache()
        _quiet_signing_logs()

    async def send(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete | Stream:
        provider = deployment.provider
        if not provider.aws_region:
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} (Bedrock) has no aws_region")
        if request.surface == "embeddings":
            return await self._embeddings(deployment, request, timeout_s)
        if request.surface != "chat":
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} (Bedrock) has no {request.surface} "
                                                 "endpoint here")
        signer = await self._signer(provider)
        model, created = deployment.upstream_model, int(self._clock())
        if is_anthropic(model) and not request.stream and not wants_json(request.payload):
            native = invoke_anthropic_body(request.payload, deployment.max_output_tokens)
            if isinstance(native, Untranslatable):
                raise _refused(native)
            resp, deadline = await self._post(deployment, "invoke", native, JSON, timeout_s, signer)
            message = _json(await read_whole(resp, provider, deadline), provider)
            if message.get("type") != "message":
                raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed answer")
            return Complete(orjson.dumps(openai_completion(message, created)))
        call = converse_request(request.payload, deployment.max_output_tokens)
        if isinstance(call, Untranslatable):
            raise _refused(call)
        if not request.stream:
            resp, deadline = await self._post(deployment, "converse", call.body, JSON, timeout_s, signer)
            completion_id = _completion_id(resp)
            answer = _json(await read_whole(resp, provider, deadline), provider)
            if not isinstance(answer.get("output"), dict):
                raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed answer")
            return Complete(orjson.dumps(converse_completion(answer, completion_id=completion_id, model=model,
                                                             created=created, json_tool=call.json_tool)))
        resp, _ = await self._post(deployment, "converse-stream", call.body, EVENT_STREAM, timeout_s, signer)
        if not resp.headers.get("content-type", "").startswith(EVENT_STREAM):
            resp.close()
            raise UpstreamFailure("protocol", f"provider {provider.name!r} answered a stream with "
                                              f"{resp.headers.get('content-type', 'no content type')!r}")
        translator = ConverseChunkTranslator(_completion_id(resp), created, model, call.json_tool)
        batches = _chunks(resp, provider, translator, signer.secrets())
        return Stream(flatten(batches), resp.close, batches)

    async def _embeddings(self, deployment: Deployment, request: HubRequest, timeout_s: float) -> Complete:
        provider = deployment.provider
        model = embedding_model(deployment.upstream_model)
        if model is None:
            raise UpstreamFailure("unsupported", f"provider {provider.name!r} (Bedrock): no embeddings translation "
                                                 f"for model {deployment.upstream_model!r} (Titan Text Embeddings and "
                                                 "Cohere Embed are supported)")
        bodies = embedding_bodies(request.payload, model, deployment.embedding_dimensions)
        if isinstance(bodies, Untranslatable):
            raise _refused(bodies)
        signer = await self._signer(provider)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        in_flight = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def embed(body: dict[str, Any]) -> tuple[list[list[float]], int | None]:
            async with in_flight:
                left = deadline - loop.time()
                if left <= 0:
                    raise UpstreamFailure("timeout", f"provider {provider.name!r} timed out")
                resp, read_by = await self._post(deployment, "invoke", body, JSON, left, signer)
                counted = resp.headers.get("x-amzn-bedrock-input-token-count", "")
                answer = _json(await read_whole(resp, provider, read_by), provider)
            return _embedded(model, answer, counted, provider)

        answers = [await embed(bodies[0])] if len(bodies) == 1 else await _all([embed(body) for body in bodies])
        vectors = [vector for batch, _ in answers for vector in batch]
        counts = [tokens for _, tokens in answers]
        tokens = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        return Complete(orjson.dumps(openai_embeddings(vectors, tokens, deployment.upstream_model,
                                                       request.payload.get("encoding_format"))))

    async def _signer(self, provider: Provider) -> _Signer:
        if provider.credential_env:
            check_credential(provider)
            return _Signer(provider.aws_region, bearer=provider.credential)
        credentials = await self._credentials.get(provider)
        if not all(s.isprintable() for s in credentials.secrets()):
            raise UpstreamFailure("auth", f"provider {provider.name!r}: the AWS credentials of {where(provider)} "
                                          "cannot be sent in a header")
        return _Signer(provider.aws_region, credentials)

    def _headers(self, url: str, body: bytes, accept: str, signer: _Signer) -> str:
        """The header lines of one request, signed for exactly ``url`` and ``body`` (Host is the client's)."""
        headers = {"Host": self._client.target(url).host_header, "Content-Type": JSON, "Accept": accept}
        if signer.bearer is not None:
            headers["Authorization"] = f"Bearer {signer.bearer}"
        else:
            from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
            from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

            request = AWSRequest(method="POST", url=url, data=body, headers=headers)
            SigV4Auth(signer.credentials, SERVICE, signer.region).add_auth(request)
            headers = dict(request.headers.items())
        del headers["Host"]  # the client writes it, the same value as signed
        return header_lines({**headers, "Accept-Encoding": "identity", "User-Agent": "tollway"})

    async def _post(self, deployment: Deployment, operation: str, payload: dict[str, Any], accept: str,
                    timeout_s: float, signer: _Signer) -> tuple[Response, float]:
        """``wire.post`` for Bedrock, whose errors are named by a header that ``wire.post``'s status translation
        does not see: the 2xx answer whose head arrived, and the deadline for reading a whole body."""
        provider = deployment.provider
        url = f"{provider.base_url}/model/{quote(deployment.upstream_model, safe='')}/{operation}"
        body = orjson.dumps(payload)
        headers = self._headers(url, body, accept, signer)
        now = asyncio.get_running_loop().time()
        deadline = now + timeout_s
        with map_failures(provider):
            resp = await self._client.post(url, headers, body, connect_timeout_s=provider.connect_timeout_s,
                                           read_timeout_s=provider.read_timeout_s,
                                           deadline=min(deadline, now + provider.read_timeout_s))
        if not 200 <= resp.status < 300:
            with map_failures(provider, resp):
                error = await resp.read(MAX_ERROR_BODY, deadline)
            resp.release()
            raise status_failure(resp.status, resp.headers.get("x-amzn-errortype", ""), error, provider,
                                 signer.secrets())
        return resp, deadline


def _json(raw: bytes, provider: Provider) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed answer")
    return parsed


def _completion_id(resp: Response) -> str:
    # Converse answers carry no id: AWS's request id is the one a support case would quote.
    return f"chatcmpl-{resp.headers.get('x-amzn-requestid') or uuid.uuid4().hex}"


def _embedded(model: EmbeddingModel, answer: dict[str, Any], counted: str,
              provider: Provider) -> tuple[list[list[float]], int | None]:
    """The vectors of one embeddings answer and the tokens it counted (Titan's body, else the
    ``X-Amzn-Bedrock-Input-Token-Count`` header, ``counted``; None: not reported)."""
    vectors = embedding_vectors(model, answer)
    if vectors is None:
        raise UpstreamFailure("protocol", f"provider {provider.name!r} sent a malformed embeddings answer")
    tokens = titan_tokens(answer) if model != "cohere" else None
    if tokens is None and counted.isdigit():
        tokens = int(counted)
    return vectors, tokens
