"""Usage, cost, what a request is charged for, and the ``Outcome`` of an admitted request. Pure.

Money is exact integers (``tollway.money``): prices are micro-dollars per million tokens, which is pico-dollars per
token, so a cost is the sum of tokens of each kind times its price in pico-dollars, never rounded.

The charging rules for answers without usage live here together: ``charged_complete`` for a non-streamed answer
whose upstream omitted ``usage``, ``charged_stream`` for a stream cut before its usage chunk. Both charge a
*central* estimate (about four characters of text a token, for the prompt and for what was produced), not the
upper bound a reservation holds, and mark it (``Usage.source``); the caller caps an estimated charge at the
request's cost bound, so a charge never exceeds what was reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.core.validate import HubRequest
from dataplane.snapshot.runtime import Deployment, Prices

UsageSource = Literal["upstream", "estimated-missing-usage", "estimated-aborted"]
CHARS_PER_TOKEN = 4  # a central estimate for English text and code (BPE tokenizers: 3.5-4.5)
MESSAGE_FRAMING_TOKENS = 4  # role and separators around one message, as OpenAI counts them


@dataclass(unsafe_hash=True)
class Usage:
    prompt_tokens: Final[int]       # all input, cache reads and writes included (OpenAI's convention)
    completion_tokens: Final[int]   # all output, reasoning included
    cached_tokens: Final[int]       # cache reads
    source: Final[UsageSource]  # where the counts come from
    cache_write_tokens: Final[int]      # cache writes at the 5-minute rate
    cache_write_1h_tokens: Final[int]   # cache writes at the 1-hour rate
    reasoning_tokens: Final[int]        # reasoning/thinking output

    def __init__(self, prompt_tokens: int = 0, completion_tokens: int = 0, cached_tokens: int = 0,
                 source: UsageSource = "upstream", cache_write_tokens: int = 0, cache_write_1h_tokens: int = 0,
                 reasoning_tokens: int = 0) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cached_tokens = cached_tokens
        self.source = source
        self.cache_write_tokens = cache_write_tokens
        self.cache_write_1h_tokens = cache_write_1h_tokens
        self.reasoning_tokens = reasoning_tokens

    @property
    def is_estimated(self) -> bool:
        return self.source != "upstream"


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def usage_of(obj: Any) -> Usage | None:
    """The ``usage`` of an OpenAI answer, if it carries one: a chat completion or chunk, an embeddings or legacy
    completions answer (``prompt_tokens``/``completion_tokens``), or a Responses API object or event (``input_tokens``
    /``output_tokens``, at the top or under ``response``, as ``response.completed`` carries it)."""
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if not isinstance(u, dict):
        inner = obj.get("response")
        u = inner.get("usage") if isinstance(inner, dict) else None
        if not isinstance(u, dict):
            return None
    responses = "input_tokens" in u or "output_tokens" in u
    inp = _details(u.get("input_tokens_details" if responses else "prompt_tokens_details"))
    out = _details(u.get("output_tokens_details" if responses else "completion_tokens_details"))
    return Usage(_count(u.get("input_tokens" if responses else "prompt_tokens")),
                 _count(u.get("output_tokens" if responses else "completion_tokens")),
                 _count(inp.get("cached_tokens")), "upstream",
                 # Tollway's extensions of the hub's usage: what adapters of providers that bill writes report
                 _count(inp.get("cache_write_tokens")), _count(inp.get("cache_write_1h_tokens")),
                 _count(out.get("reasoning_tokens")))


def _details(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def cost_pico(prices: Prices, usage: Usage) -> int:
    """Integer pico-dollars, exact: each token kind at its price. Cache reads and writes and reasoning are parts
    of the prompt and completion counts (never more than them), billed at their own rates."""
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    cached = min(usage.cached_tokens, prompt)
    writes = min(usage.cache_write_tokens + usage.cache_write_1h_tokens, prompt - cached)
    write_5m = min(usage.cache_write_tokens, writes)
    reasoning = min(usage.reasoning_tokens, completion)
    return ((prompt - cached - writes) * prices.input + cached * prices.cached_input
            + write_5m * prices.cache_write + (writes - write_5m) * prices.cache_write_1h
            + (completion - reasoning) * prices.output + reasoning * prices.reasoning_output)


@dataclass(unsafe_hash=True)
class Outcome:
    """What happened to one admitted request, for settlement and usage records."""

    request_id: Final[str]
    snapshot: Final[str]
    plan: Final[RoutePlan]
    deployment: Final[Deployment | None]  # the last one attempted
    attempts: Final[int]
    status: Final[int]
    usage: Final[Usage | None]
    cost_pico: Final[int]  # exact (``tollway.money``); an estimated charge is capped at the request's cost bound
    started: Final[float]  # unix seconds
    first_byte_s: Final[float | None]
    duration_s: Final[float]
    aborted: Final[bool]  # the stream ended early (client gone or upstream died)
    attribution: Final[Attribution | None]  # user, project and tags the request was attributed to
    upstream_s: Final[float | None]  # first upstream send to the end of the upstream body (None: not measured)

    def __init__(self, request_id: str, snapshot: str, plan: RoutePlan, deployment: Deployment | None, attempts: int,
                 status: int, usage: Usage | None, cost_pico: int, started: float, first_byte_s: float | None,
                 duration_s: float, aborted: bool = False, attribution: Attribution | None = None,
                 upstream_s: float | None = None) -> None:
        self.request_id = request_id
        self.snapshot = snapshot
        self.plan = plan
        self.deployment = deployment
        self.attempts = attempts
        self.status = status
        self.usage = usage
        self.cost_pico = cost_pico
        self.started = started
        self.first_byte_s = first_byte_s
        self.duration_s = duration_s
        self.aborted = aborted
        self.attribution = attribution
        self.upstream_s = upstream_s


def _text_chars(value: Any) -> int:
    """Characters of the text under ``value`` (strings only: keys, numbers and image data are not text)."""
    total, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            total += len(node)
        elif isinstance(node, dict):
            stack.extend(v for k, v in node.items() if k not in _NOT_TEXT)
        elif isinstance(node, list):
            stack.extend(node)
    return total


_NOT_TEXT = frozenset({"role", "type", "id", "object", "model", "image_url", "url", "data", "detail", "index",
                       "finish_reason", "logprobs", "tool_call_id", "call_id", "created", "system_fingerprint"})
_INPUT_FIELDS = {"chat": ("messages", "tools"), "embeddings": ("input",), "completions": ("prompt",),
                 "moderations": ("input",), "count_tokens": ()}


def central_prompt_tokens(request: HubRequest) -> int:
    """A central estimate of the prompt's tokens: its text at ``CHARS_PER_TOKEN``, plus message framing."""
    payload = request.payload
    chars = sum(_text_chars(payload.get(name)) for name in _INPUT_FIELDS.get(request.surface, ()))
    messages = payload.get("messages")
    framing = MESSAGE_FRAMING_TOKENS * len(messages) + 3 if isinstance(messages, list) else 0
    return -(-chars // CHARS_PER_TOKEN) + framing


def _answer_text_chars(answer: Any) -> int:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    return _text_chars(choices) if isinstance(choices, list) else 0


def charged_complete(answer: Any, body_len: int, request: HubRequest) -> Usage:
    """What a non-streamed answer (``answer``: its parsed JSON, None if it was not JSON) is charged for: the
    reported usage or, when an OpenAI-compatible server omits it, a central estimate of the prompt and of the
    answer's text (its body's length when it is not JSON), marked ``estimated-missing-usage``."""
    reported = usage_of(answer)
    if reported is not None:
        return reported
    chars = _answer_text_chars(answer) if answer is not None else body_len
    produced = 0 if request.surface in ("embeddings", "moderations") else -(-chars // CHARS_PER_TOKEN)
    return Usage(central_prompt_tokens(request), produced, 0, "estimated-missing-usage")


def charged_stream(usage: Usage | None, content_chars: int, chunks: int, request: HubRequest) -> Usage | None:
    """What a stream is charged for: the upstream's reported usage or, for a stream cut before its usage chunk
    (the client left, the upstream died), a central estimate of the prompt and of the text it carried (content
    and tool-call arguments, not framing chunks), marked ``estimated-aborted``. A stream that produced nothing
    costs nothing."""
    if usage is not None or chunks == 0:
        return usage
    return Usage(central_prompt_tokens(request), -(-content_chars // CHARS_PER_TOKEN), 0, "estimated-aborted")
