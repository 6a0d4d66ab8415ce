"""Incremental parsing of a server-sent event stream into the payloads of its ``data:`` events. Pure.

``SseParser.feed(bytes)`` takes whatever arrived from the upstream and returns the payloads of the events it
completed, in order; ``done`` turns true at ``data: [DONE]`` (that payload itself is not returned, nor anything
after it). ``finish()`` returns the payload of a last event the stream ended without terminating. Lines end in
LF, CRLF or CR; ``data`` lines of one event are joined with LF; other fields and comments are ignored.
"""

from __future__ import annotations

_DONE = b"[DONE]"
_SEPARATOR = b"\n\ndata: "


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
        parts = buf.split(b"\n\n")
        self._pending = parts.pop()
        if len(self._pending) > self._max:  # ValueError: the adapters' boundary makes it a protocol failure
            raise ValueError(f"an SSE event exceeds {self._max} bytes")
        if not parts:
            return []
        # The usual shape, checked in bulk: every event is one "data: " line (the only newlines are the
        # separators, and each part starts with the field).
        complete = len(buf) - len(self._pending)
        if (buf.startswith(b"data: ") and buf.count(b"\n", 0, complete) == 2 * len(parts)
                and buf.count(_SEPARATOR, 0, complete) == len(parts) - 1):
            payloads = [part[6:] for part in parts]
            if _DONE in payloads:
                payloads = payloads[: payloads.index(_DONE)]
                self.done = True
                self._pending = b""
            return payloads
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

    def finish(self) -> bytes | None:
        """The payload of an unterminated last event, if the stream ended without ``[DONE]``."""
        if self.done:
            return None
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        payload = _payload(pending)
        return None if payload == _DONE else payload


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
