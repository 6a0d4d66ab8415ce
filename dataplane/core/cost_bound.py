"""The worst-case cost of a request before it is sent: what a budget reservation holds.

Pure. The bound must be a true upper bound, or a budget can be overrun; so every estimate errs upwards:

- prompt tokens: a BPE token is at least one byte of UTF-8, so the byte length of every string in the messages,
  tools, functions and response format (keys included) bounds their token count; each message and each tool adds
  a fixed overhead for the role markers and framing the provider wraps around it;
- images: a fixed per-image bound by provider type (the largest image the provider accepts, at the model family
  that counts the most tokens per image); image data (URLs, base64) is not counted as text;
- output: ``max_completion_tokens``/``max_tokens`` (capped by the deployment's ``max_output_tokens``), else the
  deployment's ``max_output_tokens``, else its context window, else ``DEFAULT_OUTPUT_BOUND``; times ``n`` (and,
  for legacy completions, times the number of prompts).

Per surface: embeddings and moderations bill input only (the bytes of ``input``, or one token per token id);
legacy completions bound ``prompt`` like a message; token counting costs nothing.

A request may fail over between deployments, but a failed attempt costs nothing, so the bound is the largest over
the candidates, not their sum. Cached input is billed at most at the input price, so it is bounded as input.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dataplane.snapshot.runtime import Deployment

MESSAGE_OVERHEAD_TOKENS = 8   # role, name and separators around one message (OpenAI's rule: 3-4)
TOOL_OVERHEAD_TOKENS = 16     # framing of one tool definition
REPLY_PRIMING_TOKENS = 8      # the assistant header the provider appends
DEFAULT_OUTPUT_BOUND = 32_768
# OpenAI: high detail, 2048x768 after scaling = 8 tiles; the mini family counts 2833 + 5667 per tile.
# Anthropic: at most about 1.15 megapixels, width x height / 750 tokens.
IMAGE_TOKENS = {"openai": 2_833 + 8 * 5_667, "azure": 2_833 + 8 * 5_667, "anthropic": 1_600, "mock": 2_833 + 8 * 5_667}
_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
_MEDIA_PART_TYPES = frozenset({"input_audio", "file"})


def _string_bytes(value: Any) -> int:
    """UTF-8 bytes of every string (keys and values) and number under ``value``; iterative."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            total += len(node.encode("utf-8"))
        elif isinstance(node, dict):
            for k, v in node.items():
                total += len(str(k).encode("utf-8"))
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
        elif node is not None:
            total += len(str(node))
    return total


def _content_bound(content: Any, image_tokens: int) -> int:
    if not isinstance(content, list):
        return _string_bytes(content)
    total = 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _IMAGE_PART_TYPES:
            total += image_tokens
        elif kind in _MEDIA_PART_TYPES:
            # Audio and files are billed by the provider's own rules; their encoded size bounds them loosely.
            total += _string_bytes(part)
        else:
            total += _string_bytes(part)
    return total


def prompt_token_bound(payload: dict[str, Any], provider_type: str) -> int:
    """An upper bound of the prompt tokens of a chat completion body."""
    image_tokens = IMAGE_TOKENS.get(provider_type, max(IMAGE_TOKENS.values()))
    total = REPLY_PRIMING_TOKENS
    messages = payload.get("messages")
    for message in messages if isinstance(messages, list) else ():
        total += MESSAGE_OVERHEAD_TOKENS
        if not isinstance(message, dict):
            total += _string_bytes(message)
            continue
        for field, value in message.items():
            total += len(field)
            total += _content_bound(value, image_tokens) if field == "content" else _string_bytes(value)
    for field in ("tools", "functions"):
        defs = payload.get(field)
        if isinstance(defs, list):
            total += TOOL_OVERHEAD_TOKENS * len(defs) + _string_bytes(defs)
    for field in ("response_format", "tool_choice", "prediction"):
        if field in payload:
            total += TOOL_OVERHEAD_TOKENS + _string_bytes(payload[field])
    return total


def _requested_output(payload: dict[str, Any]) -> int | None:
    for field in ("max_completion_tokens", "max_tokens"):
        value = payload.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def output_token_bound(payload: dict[str, Any], deployment: Deployment) -> int:
    """An upper bound of the completion tokens (all choices)."""
    limit = deployment.max_output_tokens or deployment.context_window or DEFAULT_OUTPUT_BOUND
    asked = _requested_output(payload)
    per_choice = min(asked, limit) if asked is not None else limit
    n = payload.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return per_choice * choices


def cap_output(body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """``body`` with ``max_tokens`` / ``max_completion_tokens`` clamped to the deployment's catalog output limit:
    what makes ``output_token_bound`` a true upper bound, so a reservation covers what the upstream may bill.
    Returns ``body`` itself (the adapters pass their own copy)."""
    limit = deployment.max_output_tokens
    if limit > 0:
        for name in ("max_tokens", "max_completion_tokens"):
            asked = body.get(name)
            if isinstance(asked, int) and not isinstance(asked, bool) and asked > limit:
                body[name] = limit
    return body


def _input_bound(value: Any) -> int:
    """Embeddings and moderations input: a token id is one token; text is bounded by its bytes."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return len(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return sum(_input_bound(v) for v in value)
    return _string_bytes(value) + MESSAGE_OVERHEAD_TOKENS


def surface_token_bounds(payload: dict[str, Any], deployment: Deployment, surface: str) -> tuple[int, int]:
    """Upper bounds of (input, output) tokens of ``payload`` as ``surface`` on ``deployment``."""
    return input_token_bound(payload, deployment.provider.type, surface), \
        surface_output_bound(payload, deployment, surface)


def input_token_bound(payload: dict[str, Any], provider_type: str, surface: str) -> int:
    """The input half of ``surface_token_bounds``: it depends on the deployment's provider type only (images)."""
    if surface == "count_tokens":
        return 0
    if surface in ("embeddings", "moderations"):
        return _input_bound(payload.get("input"))
    if surface == "completions":
        prompt = payload.get("prompt")
        prompts = len(prompt) if isinstance(prompt, list) else 1
        return REPLY_PRIMING_TOKENS * prompts + _string_bytes(prompt)
    return prompt_token_bound(payload, provider_type)


def surface_output_bound(payload: dict[str, Any], deployment: Deployment, surface: str) -> int:
    """The output half of ``surface_token_bounds``."""
    if surface in ("count_tokens", "embeddings", "moderations"):
        return 0
    if surface == "completions":
        prompt = payload.get("prompt")
        return output_token_bound(payload, deployment) * max(len(prompt) if isinstance(prompt, list) else 1, 1)
    return output_token_bound(payload, deployment)


def deployment_cost_bound(payload: dict[str, Any], deployment: Deployment, surface: str = "chat") -> int:
    """Pico-dollars (exact): the most this request can cost if ``deployment`` serves it."""
    prompt, output = surface_token_bounds(payload, deployment, surface)
    return token_cost_bound(deployment, prompt, output)


def token_cost_bound(deployment: Deployment, prompt: int, output: int) -> int:
    """Pico-dollars: the most ``prompt`` input and ``output`` output tokens can cost on ``deployment``."""
    prices = deployment.prices
    # Any input token may be billed at the dearest input kind (a cache write), any output token as reasoning.
    return (prompt * max(prices.input, prices.cached_input, prices.cache_write, prices.cache_write_1h)
            + output * max(prices.output, prices.reasoning_output))


def requested_output_bound(max_tokens: int | None, deployment: Deployment) -> int:
    """``output_token_bound`` of one choice from the request's ``max_tokens`` fact alone (a replay's)."""
    limit = deployment.max_output_tokens or deployment.context_window or DEFAULT_OUTPUT_BOUND
    return min(max_tokens, limit) if max_tokens is not None else limit


def worst_case_pico(payload: dict[str, Any], candidates: Iterable[Deployment], surface: str = "chat") -> int:
    """The largest bound over the deployments a request may be served by (0 if there are none). The input bound
    (a walk over the whole body) is computed once per provider type, not once per candidate."""
    worst = 0
    inputs: dict[str, int] = {}
    for d in candidates:
        kind = d.provider.type
        prompt = inputs.get(kind)
        if prompt is None:
            prompt = inputs[kind] = input_token_bound(payload, kind, surface)
        worst = max(worst, token_cost_bound(d, prompt, surface_output_bound(payload, d, surface)))
    return worst


def estimate_tokens(value: Any) -> int:
    """A realistic token count of the text under ``value`` (about four bytes a token, plus message framing): what
    the gateway answers as an *estimate* where no provider counts, never used as a bound."""
    messages = value.get("messages") if isinstance(value, dict) else None
    framing = 4 * len(messages) + 3 if isinstance(messages, list) else 0
    return -(-_string_bytes(value) // 4) + framing
