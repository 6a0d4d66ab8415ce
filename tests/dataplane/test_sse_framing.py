"""Framing a batch of upstream events for the client: bytes identical to one ``data: ...\\n\\n`` per event, the
usage read from the one chunk that carries it, that chunk dropped only when the client did not ask for it."""

from __future__ import annotations

import orjson
import pytest

from dataplane.api.openai import _frame
from dataplane.api.streaming import StreamResult
from dataplane.core.accounting import Usage

pytestmark = pytest.mark.pure

DELTA = orjson.dumps({"choices": [{"index": 0, "delta": {"content": 'say "usage": {x}'}}], "usage": None})
NESTED = orjson.dumps({"choices": [{"index": 0, "delta": {}, "extra": {"usage": {"prompt_tokens": 9}}}]})
USAGE = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                               "prompt_tokens_details": {"cached_tokens": 1}}})
USAGE_WITH_CHOICES = orjson.dumps({"choices": [{"index": 0, "delta": {}}], "usage": {"prompt_tokens": 5}})


def plain(payloads: list[bytes]) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


@pytest.mark.parametrize(("batch", "include_usage", "sent", "usage"), [
    ([], False, [], None),
    ([DELTA, DELTA], False, [DELTA, DELTA], None),
    ([NESTED], False, [NESTED], None),  # a usage object that is not the chunk's own
    ([DELTA, USAGE], True, [DELTA, USAGE], Usage(3, 4, 1)),
    ([DELTA, USAGE], False, [DELTA], Usage(3, 4, 1)),
    ([USAGE], False, [], Usage(3, 4, 1)),
    ([USAGE, DELTA, USAGE_WITH_CHOICES], False, [DELTA, USAGE_WITH_CHOICES], Usage(5, 0, 0)),
    ([b'{"usage": {broken', DELTA], False, [b'{"usage": {broken', DELTA], None),
])
def test_frame(batch: list[bytes], include_usage: bool, sent: list[bytes], usage: Usage | None) -> None:
    result = StreamResult()
    assert _frame(batch, result, include_usage) == plain(sent)
    assert result.usage == usage
