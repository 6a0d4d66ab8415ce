"""SseParser: the payloads of data events, whatever the line endings and however the bytes are split."""

from __future__ import annotations

import pytest

from dataplane.upstream.sse import SseParser

pytestmark = pytest.mark.pure

STREAM = (b": keep-alive comment\n\n"
          b"data: {\"a\":1}\n\n"
          b"event: message\nid: 7\ndata: {\"b\":\n"
          b"data:2}\n\n"
          b"data:no-space\n\n\n"
          b"retry: 10\n\n"
          b"data: [DONE]\n\n"
          b"data: {\"after\":\"done\"}\n\n")
EXPECTED = [b'{"a":1}', b'{"b":\n2}', b"no-space"]


def parse(pieces: list[bytes]) -> tuple[list[bytes], bool]:
    parser = SseParser()
    out: list[bytes] = []
    for piece in pieces:
        out += parser.feed(piece)
    last = parser.finish()
    if last is not None:
        out.append(last)
    return out, parser.done


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("split", [0, 1, 2, 3, 7])
def test_every_line_ending_and_every_split(ending: bytes, split: int) -> None:
    raw = STREAM.replace(b"\n", ending)
    pieces = [raw] if split == 0 else [raw[i:i + split] for i in range(0, len(raw), split)]
    assert parse(pieces) == (EXPECTED, True)


def test_stream_ending_without_done_keeps_the_unterminated_last_event() -> None:
    assert parse([b"data: 1\n\ndata: 2"]) == ([b"1", b"2"], False)
    assert parse([b"data: 1\n\ndata: 2\r"]) == ([b"1", b"2"], False)
    assert parse([b"data: 1\n\n: only a comment"]) == ([b"1"], False)


def test_nothing_after_done() -> None:
    parser = SseParser()
    assert parser.feed(b"data: 1\n\ndata: [DONE]\n\ndata: 2\n\n") == [b"1"]
    assert parser.done and parser.feed(b"data: 3\n\n") == [] and parser.finish() is None


def test_events_arriving_together_come_out_together() -> None:
    parser = SseParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n\ndata: 3") == [b"1", b"2"]
    assert parser.feed(b"\n\n") == [b"3"]
