"""Fakes of the Gemini API and of Vertex AI's generative models: real aiohttp applications on loopback speaking
Google's wire formats, for the gateway's ``gemini`` and ``vertex`` adapters.

``async with fake_gemini(api_key="AIza-fake") as fake:`` serves, on a free port (``fake.base_url`` is the origin,
in place of ``https://generativelanguage.googleapis.com``), under ``/v1beta`` and ``/v1``:

- ``POST /{version}/models/{model}:generateContent``: a GenerateContentResponse (``candidates``, ``usageMetadata``,
  ``modelVersion``, ``responseId``).
- ``POST /{version}/models/{model}:streamGenerateContent?alt=sse``: ``data: <chunk>\\r\\n\\r\\n`` frames, the text
  a few words per chunk, function calls in one chunk, ``finishReason`` on the last; every chunk carries the
  cumulative ``usageMetadata`` (the last one is the call's). Without ``alt=sse`` the chunks come as one streamed
  JSON array, as Google sends them.
- ``POST /{version}/models/{model}:countTokens``: ``{contents}`` or ``{generateContentRequest}`` (one of them) ->
  ``{totalTokens, promptTokensDetails, cachedContentTokenCount?}``.
- ``POST /{version}/models/{model}:embedContent`` -> ``{embedding: {values}}`` and ``:batchEmbedContents``
  (``requests[].model`` must be ``models/{model}``) -> ``{embeddings: [{values}]}``.

The key is ``x-goog-api-key`` (or ``?key=``): a wrong one is Google's 400 ``API_KEY_INVALID``, none at all 403.

``async with fake_vertex(project="p", location="europe-west4") as fake:`` serves the same generative endpoints under
``/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{model}:<method>`` (Vertex's
countTokens answers ``{totalTokens, totalBillableCharacters, promptTokensDetails}``; Vertex's stream carries
``usageMetadata`` on its last chunk only), text embeddings through ``:predict`` (``{instances: [{content,
task_type?, title?}], parameters: {outputDimensionality?, autoTruncate?}}`` -> ``{predictions: [{embeddings:
{values, statistics: {token_count, truncated}}}], metadata: {billableCharacterCount}}``) and ``:embedContent``
(what the SDK uses for ``gemini-embedding-*`` on Vertex). Requests need ``Authorization: Bearer <token>`` issued
by the fake's own OAuth endpoint, ``POST /token`` (``fake.token_uri``): the RFC 7523 JWT-bearer grant
google-auth's service-account credentials send, whose RS256 signature is checked with google-auth's ``crypt``
against the trusted keys, then ``iss``, ``aud`` (``https://oauth2.googleapis.com/token``, which google-auth always
puts there, or ``fake.token_uri``), ``iat``/``exp`` and ``scope``; the answer is ``{access_token, expires_in,
token_type: "Bearer"}``. An unknown token is 401 ``ACCESS_TOKEN_TYPE_UNSUPPORTED``, an expired one 401
``ACCESS_TOKEN_EXPIRED``, none 401 ``CREDENTIALS_MISSING``, a token without the cloud-platform scope 403, another
project 403 ``IAM_PERMISSION_DENIED``. The fake makes a throwaway RSA service account (``fake.service_account``,
written with ``token_uri`` pointing at the fake to ``fake.credentials_file``; ``fake.credentials()`` loads it as
``google.oauth2.service_account.Credentials``); ``new_service_account_key`` makes more, ``fake.trust`` accepts them.

Both validate bodies like Google: unknown fields, values of the wrong type or enum, lists where a field is not
repeated (400 ``Invalid JSON payload received. Unknown name "x" at 'generation_config': Cannot find field.``
with a ``BadRequest`` detail), snake_case or camelCase names alike (the SDK sends both); then roles, empty parts,
function call/response turn order and counts, function names, sampling ranges, mime types, thinking budgets and,
for ``gemini-3*`` models, the thought signatures of the current turn's function calls (400 with Google's
messages). An unknown model is 404 ``NOT_FOUND``.

Answers: a function call when function declarations are offered and the mode is ``ANY`` (limited to
``allowedFunctionNames``), or ``AUTO`` and the last user turn says "call" (the functions it names, else the
first; a turn answering with ``functionResponse`` gets text), with ``tool_args`` or arguments made from the
declaration's schema; JSON made from ``responseSchema``/``responseJsonSchema`` (``schema_example``) when
``responseMimeType`` is ``application/json`` (``json_reply`` overrides it); else ``reply``. ``maxOutputTokens``
bounds thoughts plus text (``MAX_TOKENS``; thoughts that use it all leave a candidate with no parts), stop
sequences cut the text, ``candidateCount`` repeats the candidate. Usage: ``promptTokenCount`` is
``prompt_tokens(body)``, ``candidatesTokenCount`` the output's ``text_tokens`` (``call_tokens`` per function
call), ``thoughtsTokenCount`` billed apart and included only in ``totalTokenCount``; zero counts are left out, as
proto3 JSON does.

Knobs (set before sending): ``reply``, ``json_reply``, ``tool_args``, ``thoughts_tokens`` (for thinking models,
bounded by ``thinkingBudget``; ``includeThoughts`` adds a thought part), ``cached_tokens`` (reported as
``cachedContentTokenCount``; added to the prompt when the request names ``cachedContent``), ``block_prompt``
(True or a blockReason: ``promptFeedback`` and usage, no candidates), ``safety_stop`` (finishReason ``SAFETY``
after ``safety_stop_words`` words; with none, no content), ``safety_category``, ``safety_ratings`` (on every
candidate; otherwise only on blocks and safety stops, as Gemini 2.x answers), ``finish_reason`` (forced),
``thought_signatures`` (None: only ``gemini-3*`` models sign, and require, them), ``words_per_chunk``,
``die_after_chunks`` (close the socket instead of that stream frame), ``fail_status``/``fail_times`` (429
``RESOURCE_EXHAUSTED``, on Gemini with QuotaFailure, Help and RetryInfo ``retry_delay_s`` details; 500
``INTERNAL``; 503 ``UNAVAILABLE``; ...), ``delay_s``, ``drop_connection``, ``models``/``embedding_models``; on
Vertex also ``token_lifetime_s`` and ``expire_tokens()``. ``requests`` records every API call as it arrives (path,
query, headers, JSON body), ``token_requests`` every grant (the form).

Helpers for tests: ``text_tokens``, ``call_tokens``, ``prompt_tokens``/``prompt_token_details`` (the fake's token
counts), ``billable_characters``, ``embedding_values``, ``schema_example``, ``word_pieces``, ``google_error``,
``new_service_account_key``/``ServiceAccountKey`` (``info(token_uri)``, ``write(path, token_uri)``).

The package, by what each module holds: ``tokens`` (the fake's token counts, billable characters and
embeddings), ``wire`` (Google's JSON-to-proto parsing of request bodies), ``errors`` (Google's error bodies and
messages), ``answers`` (the plan of a generation, ``schema_example``, the stream's pieces and frames),
``prelude`` (``_Upstream``'s knobs and records, ``Received``, the shared first steps of every call), ``checks``
(the checks beyond parsing), ``generation`` (the answers, whole or streamed), ``upstream`` (``_Upstream``, what
both fakes share, made of those three), ``gemini`` (``FakeGemini``, ``fake_gemini``) and
``vertex`` (``FakeVertex``, its service accounts and OAuth token endpoint, ``fake_vertex``).
"""

from __future__ import annotations

from tests.fakes.google_upstream.answers import schema_example, word_pieces
from tests.fakes.google_upstream.checks import SKIP_SIGNATURES
from tests.fakes.google_upstream.errors import (
    API_KEY_NOT_SUPPORTED,
    INVALID_API_KEY,
    INVALID_CREDENTIALS,
    MISSING_CREDENTIALS,
    UNREGISTERED_CALLER,
    google_error,
)
from tests.fakes.google_upstream.gemini import FakeGemini, fake_gemini
from tests.fakes.google_upstream.prelude import GEMINI_EMBEDDING_MODELS, GEMINI_MODELS, Received
from tests.fakes.google_upstream.tokens import (
    EMBEDDING_INPUT_TOKENS,
    MEDIA_TOKENS,
    billable_characters,
    call_tokens,
    embedding_values,
    prompt_token_details,
    prompt_tokens,
    text_tokens,
)
from tests.fakes.google_upstream.vertex import (
    CLOUD_PLATFORM_SCOPE,
    GOOGLE_TOKEN_URI,
    JWT_BEARER_GRANT,
    VERTEX_EMBEDDING_MODELS,
    VERTEX_MODELS,
    FakeVertex,
    IssuedToken,
    ServiceAccountKey,
    fake_vertex,
    new_service_account_key,
)
from tests.fakes.google_upstream.wire import HARM_CATEGORIES

__all__ = [
    "API_KEY_NOT_SUPPORTED",
    "CLOUD_PLATFORM_SCOPE",
    "EMBEDDING_INPUT_TOKENS",
    "GEMINI_EMBEDDING_MODELS",
    "GEMINI_MODELS",
    "GOOGLE_TOKEN_URI",
    "HARM_CATEGORIES",
    "INVALID_API_KEY",
    "INVALID_CREDENTIALS",
    "JWT_BEARER_GRANT",
    "MEDIA_TOKENS",
    "MISSING_CREDENTIALS",
    "SKIP_SIGNATURES",
    "UNREGISTERED_CALLER",
    "VERTEX_EMBEDDING_MODELS",
    "VERTEX_MODELS",
    "FakeGemini",
    "FakeVertex",
    "IssuedToken",
    "Received",
    "ServiceAccountKey",
    "billable_characters",
    "call_tokens",
    "embedding_values",
    "fake_gemini",
    "fake_vertex",
    "google_error",
    "new_service_account_key",
    "prompt_token_details",
    "prompt_tokens",
    "schema_example",
    "text_tokens",
    "word_pieces",
]
