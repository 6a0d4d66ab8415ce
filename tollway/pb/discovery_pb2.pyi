from tollway.pb import snapshot_pb2 as _snapshot_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiscoveryRequest(_message.Message):
    __slots__ = ("node_id", "region", "version", "response_nonce", "error", "heartbeat", "health", "heartbeat_interval_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_NONCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    region: str
    version: str
    response_nonce: str
    error: str
    heartbeat: bool
    health: _containers.RepeatedCompositeFieldContainer[DeploymentHealth]
    heartbeat_interval_s: float
    def __init__(self, node_id: _Optional[str] = ..., region: _Optional[str] = ..., version: _Optional[str] = ..., response_nonce: _Optional[str] = ..., error: _Optional[str] = ..., heartbeat: _Optional[bool] = ..., health: _Optional[_Iterable[_Union[DeploymentHealth, _Mapping]]] = ..., heartbeat_interval_s: _Optional[float] = ...) -> None: ...

class DeploymentHealth(_message.Message):
    __slots__ = ("deployment", "provider", "state", "consecutive_failures", "ejections", "ejected_for_s", "ttfb_ms", "reason", "since_unix_s")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    EJECTIONS_FIELD_NUMBER: _ClassVar[int]
    EJECTED_FOR_S_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    provider: str
    state: str
    consecutive_failures: int
    ejections: int
    ejected_for_s: float
    ttfb_ms: float
    reason: str
    since_unix_s: float
    def __init__(self, deployment: _Optional[str] = ..., provider: _Optional[str] = ..., state: _Optional[str] = ..., consecutive_failures: _Optional[int] = ..., ejections: _Optional[int] = ..., ejected_for_s: _Optional[float] = ..., ttfb_ms: _Optional[float] = ..., reason: _Optional[str] = ..., since_unix_s: _Optional[float] = ...) -> None: ...

class DiscoveryResponse(_message.Message):
    __slots__ = ("nonce", "snapshot")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    snapshot: _snapshot_pb2.Snapshot
    def __init__(self, nonce: _Optional[str] = ..., snapshot: _Optional[_Union[_snapshot_pb2.Snapshot, _Mapping]] = ...) -> None: ...
