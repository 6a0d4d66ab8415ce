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

from tests.fakes.bedrock_upstream.converse import word_pieces
from tests.fakes.bedrock_upstream.embeddings import cohere_embeddings, embedding_vector
from tests.fakes.bedrock_upstream.errors import ERROR_MESSAGES, FAIL_ERRORS, aws_error, error_status
from tests.fakes.bedrock_upstream.eventstream import eventstream_exception, eventstream_frame, eventstream_message
from tests.fakes.bedrock_upstream.models import GEO_PREFIXES, MODELS, base_model_id
from tests.fakes.bedrock_upstream.prelude import Received
from tests.fakes.bedrock_upstream.replies import example_input
from tests.fakes.bedrock_upstream.server import FakeBedrock, fake_bedrock
from tests.fakes.bedrock_upstream.sigv4 import (
    INVALID_TOKEN,
    MAX_SKEW_S,
    SERVICE,
    SIGNATURE_MISMATCH,
    Refusal,
    parse_authorization,
    verify_signature,
)
from tests.fakes.bedrock_upstream.tokens import (
    IMAGE_TOKENS,
    anthropic_input_tokens,
    converse_input_tokens,
    output_tokens,
    text_tokens,
)
from tests.fakes.bedrock_upstream.validation import (
    ANTHROPIC_FIELDS,
    ANTHROPIC_VERSION,
    COHERE_FIELDS,
    TITAN_V1_FIELDS,
    TITAN_V2_FIELDS,
    check_shape,
    converse_problem,
    native_problem,
    service_model,
)

__all__ = [
    "ANTHROPIC_FIELDS", "ANTHROPIC_VERSION", "COHERE_FIELDS", "ERROR_MESSAGES", "FAIL_ERRORS", "GEO_PREFIXES",
    "IMAGE_TOKENS", "INVALID_TOKEN", "MAX_SKEW_S", "MODELS", "SERVICE", "SIGNATURE_MISMATCH", "TITAN_V1_FIELDS",
    "TITAN_V2_FIELDS", "FakeBedrock", "Received", "Refusal", "anthropic_input_tokens", "aws_error", "base_model_id",
    "check_shape", "cohere_embeddings", "converse_input_tokens", "converse_problem", "embedding_vector",
    "error_status", "eventstream_exception", "eventstream_frame", "eventstream_message", "example_input",
    "fake_bedrock", "native_problem", "output_tokens", "parse_authorization", "service_model", "text_tokens",
    "verify_signature", "word_pieces",
]
