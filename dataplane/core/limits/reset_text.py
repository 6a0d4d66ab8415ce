"""How OpenAI writes the ``x-ratelimit-reset-*`` headers and "try again in" (Go's duration format), for the rate
limiter's refusals and every admitted answer's headers (``dataplane.core.limits.limits_gate``).
"""

from __future__ import annotations

import math

_RESETS: dict[int, str] = {}  # format_reset's answers by millisecond: every answer carries two, mostly the same few


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes ``x-ratelimit-reset-*`` (Go's format): "20ms", "1s", "1.5s", "6m0s"."""
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    text = _RESETS.get(ms)
    if text is None:
        if len(_RESETS) >= 4096:
            _RESETS.clear()
        text = _RESETS[ms] = _go_duration(ms)
    return text


def _go_duration(ms: int) -> str:
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, frac = divmod(rest, 1000)
    text = f"{secs}.{frac:03d}".rstrip("0") if frac else str(secs)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{text}s"

