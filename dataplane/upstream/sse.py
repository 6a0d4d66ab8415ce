"""Incremental parsing of a server-sent event stream into the payloads of its ``data:`` events. Pure.

``SseParser.feed(bytes)`` takes whatever arrived from the upstream and returns the payloads of the events it
completed, in order; ``done`` turns true at ``data: [DONE]`` (that payload itself is not returned, nor anything
after it). ``finish()`` returns the payload of a last event the stream ended without terminating. Lines end in
LF, CRLF or CR; ``data`` lines of one event are joined with LF; other fields and comments are ignored.
"""

from __future__ import annotations

_DONE = b"[DONE]"
_DATA = b"data: "
_SEPARATOR = b"\n\n" + _DATA


MAX_EVENT_BYTES = 1024 * 1024  # one event larger than this is not an answer but a broken (or hostile) upstream


class SseParser:
    __slots__ = ("_max", "_pending", "done")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._pending = b""  # the start of an event whose blank line has not arrived yet
        self._max = max_event_bytes
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            return []
        buf = self._pending + data if self._pending else data
        if b"\r" in buf:
            # A CR at the very end may be the first half of a CRLF: keep it for the next feed.
            held = buf.endswith(b"\r")
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf += b"\r"
        if buf.startswith(_DATA):
            usual = self._usual(buf)
            if usual is not None:
                return usual
        parts = buf.split(b"\n\n")
        self._pending = parts.pop()
        if len(self._pending) > self._max:  # ValueError: the adapters' boundary makes it a protocol failure
            raise ValueError(f"an SSE event exceeds {self._max} bytes")
        payloads = []
        for block in parts:
            payload = _payload(block)
            if payload is None:
                continue
            if payload == _DONE:
                self.done = True
                self._pending = b""
                break
            payloads.append(payload)
        return payloads

    def _usual(self, buf: bytes) -> list[bytes] | None:
        """The payloads of ``buf`` when every event in it is one ``data: `` line (what providers send), else None
        (nothing changed): split at the separators between events, its newlines counted once to check the shape.
        Half the cost of splitting at blank lines and checking each event."""
        pieces = buf.split(_SEPARATOR)
        last = pieces[-1]
        end = last.find(b"\n\n")
        if end < 0:  # the last event is still arriving
            pieces.pop()
            pending = _DATA + last if pieces else buf
        else:
            pieces[-1], pending = last[:end], last[end + 2:]
        # Two newlines an event, none anywhere else (in an event, or in what follows the last one).
        if buf.count(b"\n") != 2 * len(pieces):
            return None
        if len(pending) > self._max:
            raise ValueError(f"an SSE event exceeds {self._max} bytes")
        self._pending = pending
        if not pieces:
            return []
        pieces[0] = pieces[0][len(_DATA):]
        if _DONE in pieces:
            pieces = pieces[: pieces.index(_DONE)]
            self.done = True
            self._pending = b""
        return pieces

    def finish(self) -> bytes | None:
        """The payload of an unterminated last event, if the stream ended without ``[DONE]`` (an unterminated
        ``[DONE]``, such as one whose last CR was held for a LF, turns ``done`` true)."""
        if self.done:
            return None
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        payload = _payload(pending)
        if payload == _DONE:
            self.done = True
            return None
        return payload


def _payload(block: bytes) -> bytes | None:
    """The data of one event (its lines without the blank line), or None when it has no ``data`` field."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the usual shape: one data line
        return block[6:]
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    if not data:
        return None
    return data[0] if len(data) == 1 else b"\n".join(data)
