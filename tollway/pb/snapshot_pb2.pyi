from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Snapshot(_message.Message):
    __slots__ = ("version", "region", "tenants", "keys", "providers", "deployments", "routes", "retired_secrets")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    RETIRED_SECRETS_FIELD_NUMBER: _ClassVar[int]
    version: str
    region: str
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    providers: _containers.RepeatedCompositeFieldContainer[Provider]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    retired_secrets: _containers.RepeatedCompositeFieldContainer[RetiredSecret]
    def __init__(self, version: _Optional[str] = ..., region: _Optional[str] = ..., tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ..., keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ..., providers: _Optional[_Iterable[_Union[Provider, _Mapping]]] = ..., deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., retired_secrets: _Optional[_Iterable[_Union[RetiredSecret, _Mapping]]] = ...) -> None: ...

class RetiredSecret(_message.Message):
    __slots__ = ("key_id", "hash", "expires_at")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    hash: bytes
    expires_at: int
    def __init__(self, key_id: _Optional[str] = ..., hash: _Optional[bytes] = ..., expires_at: _Optional[int] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "projects", "regions", "routes", "budget", "per_user_budget", "rate_limit", "per_user_rate_limit", "per_route_rate_limits", "project_policies", "logging")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    PER_USER_BUDGET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PER_USER_RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PER_ROUTE_RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_POLICIES_FIELD_NUMBER: _ClassVar[int]
    LOGGING_FIELD_NUMBER: _ClassVar[int]
    name: str
    projects: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedScalarFieldContainer[str]
    routes: _containers.RepeatedScalarFieldContainer[str]
    budget: Budget
    per_user_budget: Budget
    rate_limit: RateLimit
    per_user_rate_limit: RateLimit
    per_route_rate_limits: _containers.RepeatedCompositeFieldContainer[RouteRateLimit]
    project_policies: _containers.RepeatedCompositeFieldContainer[ProjectPolicy]
    logging: LoggingPolicy
    def __init__(self, name: _Optional[str] = ..., projects: _Optional[_Iterable[str]] = ..., regions: _Optional[_Iterable[str]] = ..., routes: _Optional[_Iterable[str]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., per_user_budget: _Optional[_Union[Budget, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., per_user_rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., per_route_rate_limits: _Optional[_Iterable[_Union[RouteRateLimit, _Mapping]]] = ..., project_policies: _Optional[_Iterable[_Union[ProjectPolicy, _Mapping]]] = ..., logging: _Optional[_Union[LoggingPolicy, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("monthly_micros", "soft_percent", "safe_allowance_micros", "lease_seconds")
    MONTHLY_MICROS_FIELD_NUMBER: _ClassVar[int]
    SOFT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SAFE_ALLOWANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    monthly_micros: int
    soft_percent: int
    safe_allowance_micros: int
    lease_seconds: int
    def __init__(self, monthly_micros: _Optional[int] = ..., soft_percent: _Optional[int] = ..., safe_allowance_micros: _Optional[int] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests_per_minute", "tokens_per_minute")
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    requests_per_minute: int
    tokens_per_minute: int
    def __init__(self, requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ...) -> None: ...

class RouteRateLimit(_message.Message):
    __slots__ = ("route", "limit")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    route: str
    limit: RateLimit
    def __init__(self, route: _Optional[str] = ..., limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class ProjectPolicy(_message.Message):
    __slots__ = ("name", "budget")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    budget: Budget
    def __init__(self, name: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class LoggingPolicy(_message.Message):
    __slots__ = ("content", "redact_before_provider", "retention_days")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    REDACT_BEFORE_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    content: str
    redact_before_provider: bool
    retention_days: int
    def __init__(self, content: _Optional[str] = ..., redact_before_provider: _Optional[bool] = ..., retention_days: _Optional[int] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "hash", "tenant", "project", "routes", "hint", "expires_at", "budget", "rate_limit")
    ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    hash: bytes
    tenant: str
    project: str
    routes: _containers.RepeatedScalarFieldContainer[str]
    hint: str
    expires_at: int
    budget: Budget
    rate_limit: RateLimit
    def __init__(self, id: _Optional[str] = ..., hash: _Optional[bytes] = ..., tenant: _Optional[str] = ..., project: _Optional[str] = ..., routes: _Optional[_Iterable[str]] = ..., hint: _Optional[str] = ..., expires_at: _Optional[int] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class Provider(_message.Message):
    __slots__ = ("name", "type", "base_url", "region", "credential_env", "connect_timeout_s", "read_timeout_s", "mock", "api_version", "aws_region", "aws_profile", "gcp_project", "gcp_location")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ENV_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    READ_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MOCK_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    AWS_REGION_FIELD_NUMBER: _ClassVar[int]
    AWS_PROFILE_FIELD_NUMBER: _ClassVar[int]
    GCP_PROJECT_FIELD_NUMBER: _ClassVar[int]
    GCP_LOCATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    base_url: str
    region: str
    credential_env: str
    connect_timeout_s: float
    read_timeout_s: float
    mock: MockOptions
    api_version: str
    aws_region: str
    aws_profile: str
    gcp_project: str
    gcp_location: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., base_url: _Optional[str] = ..., region: _Optional[str] = ..., credential_env: _Optional[str] = ..., connect_timeout_s: _Optional[float] = ..., read_timeout_s: _Optional[float] = ..., mock: _Optional[_Union[MockOptions, _Mapping]] = ..., api_version: _Optional[str] = ..., aws_region: _Optional[str] = ..., aws_profile: _Optional[str] = ..., gcp_project: _Optional[str] = ..., gcp_location: _Optional[str] = ...) -> None: ...

class MockOptions(_message.Message):
    __slots__ = ("delay_ms", "tokens_per_second")
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    delay_ms: int
    tokens_per_second: int
    def __init__(self, delay_ms: _Optional[int] = ..., tokens_per_second: _Optional[int] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "provider", "upstream_model", "capabilities", "context_window", "max_output_tokens", "prices", "surfaces", "embedding")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    SURFACES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    upstream_model: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    context_window: int
    max_output_tokens: int
    prices: Prices
    surfaces: _containers.RepeatedScalarFieldContainer[str]
    embedding: Embedding
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., prices: _Optional[_Union[Prices, _Mapping]] = ..., surfaces: _Optional[_Iterable[str]] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("family", "dimensions")
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    family: str
    dimensions: int
    def __init__(self, family: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class Prices(_message.Message):
    __slots__ = ("input", "output", "cached_input", "cache_write", "cache_write_1h", "reasoning_output")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_FIELD_NUMBER: _ClassVar[int]
    REASONING_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    input: int
    output: int
    cached_input: int
    cache_write: int
    cache_write_1h: int
    reasoning_output: int
    def __init__(self, input: _Optional[int] = ..., output: _Optional[int] = ..., cached_input: _Optional[int] = ..., cache_write: _Optional[int] = ..., cache_write_1h: _Optional[int] = ..., reasoning_output: _Optional[int] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("name", "deployments", "strategy", "failover", "weights", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    deployments: _containers.RepeatedScalarFieldContainer[str]
    strategy: str
    failover: Failover
    weights: _containers.RepeatedScalarFieldContainer[int]
    kind: str
    def __init__(self, name: _Optional[str] = ..., deployments: _Optional[_Iterable[str]] = ..., strategy: _Optional[str] = ..., failover: _Optional[_Union[Failover, _Mapping]] = ..., weights: _Optional[_Iterable[int]] = ..., kind: _Optional[str] = ...) -> None: ...

class Failover(_message.Message):
    __slots__ = ("attempts", "attempt_timeout_s", "total_timeout_s", "on")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    attempt_timeout_s: float
    total_timeout_s: float
    on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attempts: _Optional[int] = ..., attempt_timeout_s: _Optional[float] = ..., total_timeout_s: _Optional[float] = ..., on: _Optional[_Iterable[str]] = ...) -> None: ...
