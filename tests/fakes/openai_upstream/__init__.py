"""A fake OpenAI server: a real aiohttp application on loopback speaking OpenAI's wire formats.

``async with fake_openai(token="sk-fake") as fake:`` starts it on a free port; ``fake.base_url`` ends in ``/v1``.
It serves:

- ``POST /v1/chat/completions``: a chat completion, or with ``stream`` ``data: <chunk>`` lines, a usage chunk when
  ``stream_options.include_usage``, then ``data: [DONE]``.
- ``POST /v1/embeddings``: ``input`` a string, strings, token ids or lists of token ids (400 ``'$.input' is
  invalid`` otherwise); ``embedding_vector`` of each (``dimensions`` components, at most ``MAX_DIMENSIONS``,
  else ``embedding_dimensions``), as floats or, with ``encoding_format: "base64"``, little-endian float32 bytes
  in base64; usage counts ``text_tokens`` per string and one token per id.
- ``POST /v1/completions`` (legacy): ``prompt`` a string or strings (or token ids), ``max_tokens`` (16 by default,
  ``finish_reason: "length"`` when the reply is longer), ``n`` (at most ``MAX_N``), ``echo``, ``stream``
  (``data: <text_completion chunk>`` lines, a usage chunk when ``stream_options.include_usage``, ``data:
  [DONE]``).
- ``POST /v1/responses``: a Response object whose ``output`` is one ``message`` (``output_text``) or, when function
  ``tools`` are offered and ``tool_choice`` is ``"required"`` (or names one of them), one ``function_call`` with
  ``tool_arguments``; ``max_output_tokens`` below the reply's length makes it ``incomplete``. With ``stream`` it is
  the event stream (``event: <type>`` / ``data: <json>``, a ``sequence_number`` on each): response.created,
  response.in_progress, response.output_item.added, response.content_part.added, response.output_text.delta per
  word, response.output_text.done, response.content_part.done, response.output_item.done, response.completed
  (function calls: response.function_call_arguments.delta/.done in place of the content events). With ``store``
  (the default) the response is kept in ``stored``: ``previous_response_id`` prepends its input and output to the
  new input (an unknown id is the real 400 ``previous_response_not_found``), and ``GET``/``DELETE
  /v1/responses/{id}`` retrieve and delete it. Usage: ``response_input_tokens`` of the whole context.
- ``POST /v1/moderations``: a ModerationCreateResponse, one result per input string (one for a multimodal list);
  an input containing a word of ``moderation_triggers`` is flagged in that word's category.

Every endpoint first records the request (``fake.requests``, with its path), checks the bearer token (401 with
OpenAI's error body otherwise), refuses a body that is not a JSON object (400), then applies the knobs a test
sets before sending: ``delay_s`` (wait before answering), ``drop_connection`` (close the socket without
answering), ``fail_status``/``fail_times`` (answer an error status that many times). Other knobs:
``die_after_chunks`` (close the socket in the middle of a chat, completions or Responses stream, before that
frame), ``reply`` (the content), ``cached_tokens`` (reported as cached input), ``embedding_dimensions``,
``tool_arguments``, ``moderation_triggers``. Errors use OpenAI's envelope ``{"error": {"message", "type",
"param", "code"}}``.
"""

from __future__ import annotations

from tests.fakes.openai_upstream.completions import MAX_N
from tests.fakes.openai_upstream.embeddings import MAX_DIMENSIONS, embedding_vector
from tests.fakes.openai_upstream.errors import INVALID, UNPARSABLE
from tests.fakes.openai_upstream.moderations import MODERATION_CATEGORIES
from tests.fakes.openai_upstream.prelude import Received, StoredResponse
from tests.fakes.openai_upstream.server import FakeOpenAI, fake_openai
from tests.fakes.openai_upstream.tokens import response_input_tokens, text_tokens, word_pieces

__all__ = [
    "INVALID", "MAX_DIMENSIONS", "MAX_N", "MODERATION_CATEGORIES", "UNPARSABLE", "FakeOpenAI", "Received",
    "StoredResponse", "embedding_vector", "fake_openai", "response_input_tokens", "text_tokens", "word_pieces",
]
