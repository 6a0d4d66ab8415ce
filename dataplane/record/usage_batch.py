"""A batch of usage records as it goes to the control plane: the serialized ``UsageBatch`` of records the spool
(``dataplane.record.spool``) holds already serialized, written around them rather than built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tollway.pb import usage_pb2 as upb
from tollway.protowire import LEN, VARINT, delimited, tag, varint

_NODE_ID = tag(upb.UsageBatch.NODE_ID_FIELD_NUMBER, LEN)
_EPOCH = tag(upb.UsageBatch.EPOCH_FIELD_NUMBER, LEN)
_SEQUENCE = tag(upb.UsageBatch.SEQUENCE_FIELD_NUMBER, VARINT)
_RECORDS = tag(upb.UsageBatch.RECORDS_FIELD_NUMBER, LEN)


@dataclass(unsafe_hash=True)
class Batch:
    """A batch cut from the spool, as it goes to the control plane: ``wire``, the serialized ``UsageBatch``."""

    sequence: Final[int]
    records: Final[int]  # how many
    wire: Final[bytes]

    def __init__(self, sequence: int, records: int, wire: bytes) -> None:
        self.sequence = sequence
        self.records = records
        self.wire = wire

    def parsed(self) -> upb.UsageBatch:
        return upb.UsageBatch.FromString(self.wire)


def batch_of(node_id: str, epoch: str, sequence: int, payloads: list[bytes]) -> Batch:
    """The batch of ``payloads`` (serialized records, as the spool holds them), written, not built: the records'
    field of a ``UsageBatch`` on the wire is each record's bytes behind its tag and length, so the records are
    never parsed on their way out (the bytes ``SerializeToString`` would write: proto3 leaves out empty fields)."""
    head = [delimited(_NODE_ID, node_id.encode()) if node_id else b"",
            delimited(_EPOCH, epoch.encode()) if epoch else b"",
            _SEQUENCE + varint(sequence) if sequence else b""]
    return Batch(sequence, len(payloads), b"".join([*head, *[delimited(_RECORDS, p) for p in payloads]]))
