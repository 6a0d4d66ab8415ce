"""One request's trace context (W3C Trace Context) as the request path carries it. No OpenTelemetry import.

``Tracer.begin`` (``dataplane.record.tracing``) makes a ``RequestTrace`` once per request, and only for a request
that is sampled or whose client sent a valid ``traceparent``; every other request carries ``None`` and pays
nothing more. A sampled trace owns its ids from the start: the request span's id, and one span id per upstream
attempt, chosen when the attempt is sent, so the ``traceparent`` the upstream receives names the attempt span
that is exported after the answer. While the request runs, the trace only collects facts (attempt start and end,
failure, the answer's finish reasons and model); spans are built from them at record time, off the hot path.

An unsampled trace forwards the client's ``traceparent`` (and ``tracestate``) to the upstream unchanged, as a
participant that records nothing may. Owned by one request on one event loop; not shared.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from dataplane.errors import UpstreamFailure
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.runtime import Deployment

if TYPE_CHECKING:  # (recording does not import serving: only the shape of what it wraps)
    from dataplane.upstream.adapters.reply import Batches

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
MAX_TRACESTATE = 512  # the W3C limit a participant must propagate; longer ones are dropped, not cut
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([^"\\]{1,64})"')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')


@dataclass(unsafe_hash=True)
class ParentContext:
    """The client's span, from its ``traceparent``."""

    trace_id: Final[int]
    span_id: Final[int]
    sampled: Final[bool]
    header: Final[str]  # the client's traceparent (and tracestate) as header lines, to forward when not recording
    state: Final[str]  # its tracestate, if valid

    def __init__(self, trace_id: int, span_id: int, sampled: bool, header: str, state: str = "") -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.header = header
        self.state = state


def parse_traceparent(value: str | None, state: str | None = None) -> ParentContext | None:
    """The parent a ``traceparent`` header names; None when absent or invalid (then the request starts a trace).

    Version ``00`` must be exactly 55 characters; a later version may carry more after a ``-`` (W3C: parse what
    is known, ignore the rest). Version ``ff`` and all-zero ids are invalid."""
    if value is None:
        return None
    value = value.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex = match.groups()
    if version == "ff" or (version == "00" and len(value) != 55) or (len(value) > 55 and value[55] != "-"):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    kept = state.strip() if state and len(state) <= MAX_TRACESTATE and state.isprintable() else ""
    header = f"traceparent: 00-{trace_hex}-{span_hex}-{flags_hex}\r\n"
    if kept:
        header += f"tracestate: {kept}\r\n"
    return ParentContext(trace_id, span_id, bool(int(flags_hex, 16) & 1), header, kept)


@dataclass(slots=True)
class AttemptSpan:
    """One upstream attempt of a sampled request."""

    span_id: int
    deployment: Deployment
    start_ns: int
    end_ns: int = 0
    failure: UpstreamFailure | None = None


@dataclass(slots=True)
class RequestTrace:
    trace_id: int
    span_id: int  # the request (server) span's; 0 when not sampled
    parent: ParentContext | None
    sampled: bool
    attempts: list[AttemptSpan] = field(default_factory=list)
    reason: str = ""  # the route reason (strategy, failover:KIND, failed:KIND)
    finish_reasons: list[str] = field(default_factory=list)
    response_model: str = ""
    response_id: str = ""

    def attempting(self, deployment: Deployment) -> str:
        """The trace header lines to send with an attempt at ``deployment`` (each ends in CRLF)."""
        if not self.sampled:
            return self.parent.header if self.parent is not None else ""
        span_id = random.getrandbits(64) or 1
        self.attempts.append(AttemptSpan(span_id, deployment, time.time_ns()))
        state = self.parent.state if self.parent is not None else ""
        header = f"traceparent: 00-{self.trace_id:032x}-{span_id:016x}-01\r\n"
        return f"{header}tracestate: {state}\r\n" if state else header

    def attempt_ended(self, failure: UpstreamFailure | None) -> None:
        """The attempt sent last has its answer's head (``None``) or failed."""
        if self.attempts and not self.attempts[-1].end_ns:
            last = self.attempts[-1]
            last.end_ns, last.failure = time.time_ns(), failure

    def note_answer(self, answer: Any) -> None:
        """Facts of a non-streamed answer (its parsed JSON): finish reasons, model, id."""
        if not self.sampled or not isinstance(answer, dict):
            return
        choices = answer.get("choices")
        if isinstance(choices, list):
            self.finish_reasons = [c["finish_reason"] for c in choices
                                   if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]
        elif isinstance(answer.get("stop_reason"), str):  # an Anthropic Messages answer passed through
            self.finish_reasons = [answer["stop_reason"]]
        if isinstance(answer.get("model"), str):
            self.response_model = answer["model"]
        if isinstance(answer.get("id"), str):
            self.response_id = answer["id"]

    def note_events(self, payloads: list[bytes]) -> None:
        """Facts of streamed events, as they pass: finish reasons and the model the upstream names.

        One search of the batch joined, not one a payload (every chat chunk names ``finish_reason``, most as
        ``null``): a third of the time. A JSON object ends with ``}``, so no match spans two payloads."""
        joined = b"\n".join(payloads)  # (one payload: itself, not a copy)
        if not self.response_model and (model := _MODEL.search(joined)) is not None:
            self.response_model = model.group(1).decode("utf-8", "replace")
        if b"finish_reason" in joined:
            self.finish_reasons.extend(m.decode("utf-8", "replace") for m in _FINISH.findall(joined))


    def noting(self, first: list[bytes], batches: Batches) -> Batches:
        """A stream's batches, relayed unchanged, with their facts noted (``first``: the events already read)."""
        self.note_events(first)
        return _Noting(batches, self)


class _Noting:
    """``RequestTrace.noting``'s batches. Not an ``async def`` generator: one closed before it started (a stream
    whose first read held all of it is never iterated further) would not run its body, so would leave the
    batches beneath it open, their upstream connection released only when the collector finalized them; this
    closes them in every case."""

    __slots__ = ("_batches", "_trace")

    def __init__(self, batches: Batches, trace: RequestTrace) -> None:
        self._batches, self._trace = batches, trace

    def __aiter__(self) -> _Noting:
        return self

    async def __anext__(self) -> list[bytes]:
        batch = await anext(self._batches)
        self._trace.note_events(batch)
        return batch

    async def aclose(self) -> None:
        await self._batches.aclose()


def is_configured(settings: DataPlaneSettings, environ: Mapping[str, str]) -> bool:
    """Tracing is on when an OTLP endpoint is configured and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(settings.otlp_endpoint or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
