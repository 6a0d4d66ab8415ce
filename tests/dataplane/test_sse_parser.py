"""SseParser: the payloads of data events, whatever the line endings and however the bytes are split."""

from __future__ import annotations

import random

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


def reference(raw: bytes) -> tuple[list[bytes], bool]:
    """The payloads of ``raw`` by the HTML standard's line-by-line algorithm (data fields joined with LF, an
    event dispatched at a blank line), up to ``[DONE]``; and whether it came. Unlike the standard, an event left
    unterminated at the end counts."""
    out: list[bytes] = []
    data: list[bytes] | None = None
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if not line:
            if data is not None:
                payload = b"\n".join(data)
                if payload == b"[DONE]":
                    return out, True
                out.append(payload)
            data = None
        elif line.startswith(b"data:"):
            value = line[5:]
            (data := data if data is not None else []).append(value[1:] if value.startswith(b" ") else value)
    if data is not None:  # unterminated: kept (the standard drops it; a gateway would rather not lose it)
        if b"\n".join(data) == b"[DONE]":
            return out, True
        out.append(b"\n".join(data))
    return out, False


def random_stream(rng: random.Random) -> bytes:
    """Mostly the usual shape (one ``data: `` line an event, as providers send), now and then anything else."""
    events = []
    for i in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.7:
            events.append(b'data: {"i":%d,"t":"%s"}\n\n' % (i, b"x" * rng.randint(0, 20)))
        elif kind < 0.75:
            events.append(b"data: \n\n")
        elif kind < 0.8:
            events.append(b": keep-alive\n\n")
        elif kind < 0.85:
            events.append(b"event: delta\ndata: {\"i\":%d}\n\n" % i)
        elif kind < 0.9:
            events.append(b"data: {\"a\":\ndata: %d}\n\n" % i)
        elif kind < 0.95:
            events.append(b"data:%d\n\n\n" % i)
        else:
            events.append(b"data: [DONE]\n\n")
    raw = b"".join(events)
    if rng.random() < 0.3:
        raw = raw[: rng.randint(0, len(raw))]  # cut anywhere: a stream that ends mid-event
    if rng.random() < 0.2:
        raw = raw.replace(b"\n", rng.choice([b"\r\n", b"\r"]))
    return raw


def test_any_stream_split_anywhere_parses_as_the_standard_says() -> None:
    rng = random.Random(20261203)
    for _ in range(3000):
        raw = random_stream(rng)
        cuts = sorted(rng.sample(range(1, len(raw)), min(rng.randint(0, 4), max(len(raw) - 1, 0)))) if raw else []
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        assert parse(pieces) == reference(raw), (raw, cuts)


def test_an_event_larger_than_the_limit_is_refused_in_either_shape() -> None:
    with pytest.raises(ValueError, match="exceeds 16 bytes"):
        SseParser(max_event_bytes=16).feed(b"data: 1\n\ndata: " + b"x" * 20)
    with pytest.raises(ValueError, match="exceeds 16 bytes"):
        SseParser(max_event_bytes=16).feed(b": comment\n\ndata: " + b"x" * 20)
