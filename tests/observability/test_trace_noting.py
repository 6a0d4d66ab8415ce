"""A sampled stream's batches pass through ``RequestTrace.noting``: relayed unchanged, their facts noted, and closed
with it. A stream whose first read held all of it is never iterated past its first events, so the noting batches
are closed before they started: what lies beneath (the upstream's answer, its connection) must close all the
same, at once, not when the collector finalizes it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from dataplane.record.trace_context import RequestTrace
from dataplane.upstream.adapters import LastBatch

FIRST = [b'{"id":"c1","model":"gpt-x-2026","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}']
LAST = LastBatch([b'{"id":"c1","choices":[{"delta":{},"finish_reason":"stop"}]}'])


def upstream(closed: list[str]) -> AsyncGenerator[list[bytes], None]:
    async def batches() -> AsyncGenerator[list[bytes], None]:
        try:
            yield FIRST
            yield LAST
        finally:
            closed.append("upstream answer closed")
    return batches()


async def test_closed_before_it_started_it_closes_the_stream_beneath() -> None:
    closed: list[str] = []
    beneath = upstream(closed)
    first = await anext(beneath)  # the attempt reads the first events before answering
    noted = RequestTrace(1, 2, None, True).noting(first, beneath)
    await noted.aclose()
    assert closed == ["upstream answer closed"]


async def test_batches_pass_unchanged_and_their_facts_are_noted() -> None:
    closed: list[str] = []
    beneath = upstream(closed)
    trace = RequestTrace(1, 2, None, True)
    noted = trace.noting(await anext(beneath), beneath)
    batch = await anext(noted)
    assert batch is LAST and isinstance(batch, LastBatch)
    assert (trace.response_model, trace.finish_reasons) == ("gpt-x-2026", ["stop"])
    assert [b async for b in noted] == []
    await noted.aclose()
    assert closed == ["upstream answer closed"]
