"""Protobuf's wire format, by hand, for the places that write a message's bytes directly instead of building
the message: the snapshot compiler's key entries (``controlplane.policy.compile``: 100,000 keys), the usage
spool's batches (``dataplane.record.spool``: records already serialized on disk) and the OTLP trace export
(``dataplane.record.otlp_export``: the SDK's message building cost more than a request). Pure.
"""

from __future__ import annotations

import struct

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # wire types
_FIXED64, _FIXED32, _DOUBLE = struct.Struct("<Q"), struct.Struct("<I"), struct.Struct("<d")
ONE_BYTE_VARINTS = tuple(bytes((n,)) for n in range(0x80))  # nearly every length in a key entry or a record


def varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return ONE_BYTE_VARINTS[n]
    n &= 0xFFFF_FFFF_FFFF_FFFF  # int64: a negative number is its 64-bit two's complement
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    return varint(number << 3 | wire_type)


def delimited(key: bytes, data: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message) behind its ``key`` (``tag``)."""
    return key + varint(len(data)) + data


def fixed64(n: int) -> bytes:
    return _FIXED64.pack(n)


def fixed32(n: int) -> bytes:
    return _FIXED32.pack(n)


def double(x: float) -> bytes:
    return _DOUBLE.pack(x)
