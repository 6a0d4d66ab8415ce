"""The AWS event-stream framing (``application/vnd.amazon.eventstream``) of ConverseStream: binary messages
(``eventstream_message``), event frames (``eventstream_frame``) and exception frames (``eventstream_exception``)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson


def eventstream_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One binary event-stream message: prelude (total length, headers length, CRC32 of both), string headers
    (name length, name, type 7, value length, value), payload, CRC32 of everything before it; big-endian."""
    raw_headers = b"".join(len(name.encode()).to_bytes(1, "big") + name.encode() + b"\x07"
                           + len(value.encode()).to_bytes(2, "big") + value.encode()
                           for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(payload) + 4, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def eventstream_frame(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An event message (``:event-type``, ``:content-type: application/json``, ``:message-type: event``)."""
    return eventstream_message({":event-type": event_type, ":content-type": "application/json",
                                ":message-type": "event"}, orjson.dumps(payload))


def eventstream_exception(exception_type: str, payload: Mapping[str, Any]) -> bytes:
    """An exception message (``:exception-type`` e.g. ``throttlingException``, ``:message-type: exception``)."""
    return eventstream_message({":exception-type": exception_type, ":content-type": "application/json",
                                ":message-type": "exception"}, orjson.dumps(payload))
