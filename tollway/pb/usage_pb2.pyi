from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageRecord(_message.Message):
    __slots__ = ("request_id", "timestamp_ms", "tenant", "project", "user", "key_id", "route", "deployment", "provider", "region", "snapshot_version", "input_tokens", "cached_input_tokens", "output_tokens", "cost_micros", "latency_ms", "ttfb_ms", "upstream_ms", "status", "error_type", "attempts", "tags", "stream", "node_id", "cost_pico", "usage_source", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens", "surface", "needs", "estimated_prompt_tokens", "max_tokens", "refusal")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    COST_PICO_FIELD_NUMBER: _ClassVar[int]
    USAGE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    timestamp_ms: int
    tenant: str
    project: str
    user: str
    key_id: str
    route: str
    deployment: str
    provider: str
    region: str
    snapshot_version: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int
    latency_ms: int
    ttfb_ms: int
    upstream_ms: int
    status: int
    error_type: str
    attempts: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    stream: bool
    node_id: str
    cost_pico: int
    usage_source: str
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    surface: str
    needs: _containers.RepeatedScalarFieldContainer[str]
    estimated_prompt_tokens: int
    max_tokens: int
    refusal: str
    def __init__(self, request_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., user: _Optional[str] = ..., key_id: _Optional[str] = ..., route: _Optional[str] = ..., deployment: _Optional[str] = ..., provider: _Optional[str] = ..., region: _Optional[str] = ..., snapshot_version: _Optional[str] = ..., input_tokens: _Optional[int] = ..., cached_input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_micros: _Optional[int] = ..., latency_ms: _Optional[int] = ..., ttfb_ms: _Optional[int] = ..., upstream_ms: _Optional[int] = ..., status: _Optional[int] = ..., error_type: _Optional[str] = ..., attempts: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., stream: _Optional[bool] = ..., node_id: _Optional[str] = ..., cost_pico: _Optional[int] = ..., usage_source: _Optional[str] = ..., cache_write_tokens: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ..., reasoning_tokens: _Optional[int] = ..., surface: _Optional[str] = ..., needs: _Optional[_Iterable[str]] = ..., estimated_prompt_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., refusal: _Optional[str] = ...) -> None: ...

class UsageBatch(_message.Message):
    __slots__ = ("node_id", "epoch", "sequence", "records")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    epoch: str
    sequence: int
    records: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    def __init__(self, node_id: _Optional[str] = ..., epoch: _Optional[str] = ..., sequence: _Optional[int] = ..., records: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ...) -> None: ...

class UsageAck(_message.Message):
    __slots__ = ("node_id", "epoch", "sequence")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    epoch: str
    sequence: int
    def __init__(self, node_id: _Optional[str] = ..., epoch: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...
