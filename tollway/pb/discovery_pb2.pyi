from tollway.pb import snapshot_pb2 as _snapshot_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiscoveryRequest(_message.Message):
    __slots__ = ("node_id", "region", "version", "response_nonce", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_NONCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    region: str
    version: str
    response_nonce: str
    error: str
    def __init__(self, node_id: _Optional[str] = ..., region: _Optional[str] = ..., version: _Optional[str] = ..., response_nonce: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class DiscoveryResponse(_message.Message):
    __slots__ = ("nonce", "snapshot")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    snapshot: _snapshot_pb2.Snapshot
    def __init__(self, nonce: _Optional[str] = ..., snapshot: _Optional[_Union[_snapshot_pb2.Snapshot, _Mapping]] = ...) -> None: ...
