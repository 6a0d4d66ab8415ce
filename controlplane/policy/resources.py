"""Policy resources: the documents users write in YAML, validated with pydantic.

Every document has the same envelope, so new kinds and new optional fields fit in without breaking old files::

    apiVersion: tollway.dev/v1
    kind: Tenant | ApiKey | Provider | Model | Route
    metadata: {name: ..., labels: {...}}
    spec: {...}

Resources are immutable values (frozen models). A resource is identified by ``(kind, name)``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "tollway.dev/v1"
NAME_RE = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"

Name = Annotated[str, Field(pattern=NAME_RE)]
Region = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]
Capability = Literal["tools", "vision", "json_mode"]
# What a deployment serves. chat: chat completions (and, translated by the gateway, the Responses and Anthropic
# Messages APIs); responses: the Responses API natively (passed through); count_tokens: a native counting endpoint.
Surface = Literal["chat", "responses", "embeddings", "completions", "moderations", "count_tokens"]
GENERATIVE: frozenset[str] = frozenset({"chat", "responses", "completions"})
FailoverOn = Literal["connect", "timeout", "5xx", "429"]
_ALL_FAILOVER: tuple[FailoverOn, ...] = ("connect", "timeout", "5xx", "429")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _CamelSpec(_Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, alias_generator=_camel)


# Labels as Kubernetes writes them, so ``gatectl get -l key=value,key!=other,key,!key`` is unambiguous: a key is an
# optional DNS-subdomain prefix and ``/`` plus a name of at most 63 characters; a value is such a name or empty.
LABEL_NAME_RE = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
LABEL_KEY_RE = rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{LABEL_NAME_RE}$"
LABEL_VALUE_RE = rf"^({LABEL_NAME_RE})?$"


class Metadata(_Spec):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not re.match(LABEL_KEY_RE, key):
                raise ValueError(f"label key {key!r} is not valid: an optional DNS prefix and '/', then at most 63 "
                                 "letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
            if not re.match(LABEL_VALUE_RE, value):
                raise ValueError(f"label {key}: value {value!r} is not valid: at most 63 letters, digits, '.', '_' "
                                 "or '-', starting and ending with a letter or digit (or empty)")
        return labels


MAX_USD = Decimal(10) ** 12  # a trillion: every amount's micro-dollars (and pico-dollars per token) fit in 64 bits
_MICRO = Decimal("0.000001")


def _check_usd(value: Decimal | None) -> Decimal | None:
    # Bounded first: ``1e999999999`` would overflow the decimal context (a 500) or the snapshot's integers.
    if value is not None and (not value.is_finite() or value > MAX_USD):
        raise ValueError(f"amounts are at most {MAX_USD:,} USD")
    if value is not None and value != value.quantize(_MICRO):
        raise ValueError("amounts have at most 6 decimal places (micro-dollars)")
    return value


class Budget(_CamelSpec):
    """A monthly budget in USD (calendar month, UTC). Compiled to integer micro-dollars."""

    monthly_usd: Decimal = Field(ge=0, description="hard cap: requests are refused once it is spent")
    soft_percent: int = Field(default=80, ge=1, le=100, description="an alert event is raised past this share")
    safe_allowance_usd: Decimal = Field(
        default=Decimal(0), ge=0,
        description="what each data plane may spend while its lease has expired and the control plane is away")
    lease_seconds: int | None = Field(
        default=None, ge=5, le=86_400,
        description="how long a data plane's grant of this budget lasts, so it serves through a control-plane "
                    "outage that long (default: the control plane's --lease-ttl)")

    @field_validator("monthly_usd", "safe_allowance_usd")
    @classmethod
    def _micro_precision(cls, value: Decimal) -> Decimal:
        _check_usd(value)
        return value


class RateLimit(_CamelSpec):
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)


class ModelRateLimit(RateLimit):
    route: Name


class RateLimits(RateLimit):
    """Per tenant (the fields of ``RateLimit``), per user of the tenant, and per route (model) of the tenant."""

    per_user: RateLimit | None = None
    per_model: list[ModelRateLimit] = Field(default_factory=list)


ContentMode = Literal["none", "hashed", "redacted", "full"]


class LoggingSpec(_CamelSpec):
    content: ContentMode = Field(default="none", description="what is kept of prompts and responses")
    redact_before_provider: bool = False
    retention_days: int = Field(default=90, ge=1, le=3650, description="usage data older than this is deleted")


AlertKind = Literal["budget.soft_threshold", "budget.exhausted", "ratelimit.refusing"]
ALERT_KINDS: tuple[AlertKind, ...] = ("budget.soft_threshold", "budget.exhausted", "ratelimit.refusing")


class Webhook(_CamelSpec):
    """A receiver of the tenant's alert events (``controlplane.alerts``), signed with an HMAC secret that policy only
    names: ``secretFile`` on the control plane's host, else the environment variable
    ``TOLLWAY_WEBHOOK_SECRET_<NAME>`` (the name upper-cased, ``-`` and ``.`` as ``_``)."""

    name: Name
    url: str = Field(description="http(s) URL the events are POSTed to")
    secret_file: str | None = Field(default=None, description="absolute path of a file holding the HMAC secret")
    events: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS), min_length=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/@]+(/\S*)?$", url):
            raise ValueError("url must be an http(s) URL without credentials (user:password@) or spaces")
        return url

    @field_validator("secret_file")
    @classmethod
    def _check_secret_file(cls, path: str | None) -> str | None:
        if path is not None and not path.startswith("/"):
            raise ValueError("secretFile must be an absolute path (the secret itself never goes in policy)")
        return path


class AlertsSpec(_CamelSpec):
    webhooks: list[Webhook] = Field(default_factory=list)

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, webhooks: list[Webhook]) -> list[Webhook]:
        names = [w.name for w in webhooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate webhook names: {', '.join(dupes)}")
        return webhooks


class Project(_CamelSpec):
    name: Name
    description: str = ""
    budget: Budget | None = None


class TenantSpec(_CamelSpec):
    display_name: str = ""
    regions: list[Region] = Field(min_length=1)
    projects: list[Project] = Field(default_factory=list)
    routes: list[Name] = Field(default_factory=list, description="allowed routes; empty: all")
    budget: Budget | None = None
    per_user_budget: Budget | None = Field(default=None, description="applies to each user of the tenant")
    rate_limits: RateLimits | None = None
    logging: LoggingSpec = Field(default_factory=LoggingSpec)
    alerts: AlertsSpec | None = Field(default=None, description="webhooks for budget and rate-limit alerts")

    @field_validator("projects")
    @classmethod
    def _unique_projects(cls, projects: list[Project]) -> list[Project]:
        names = [p.name for p in projects]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate project names: {', '.join(dupes)}")
        return projects


KeyHash = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class PreviousSecret(_CamelSpec):
    """A secret replaced by a rotation: still accepted until ``expiresAt`` (the overlap), then refused."""

    hash: KeyHash
    expires_at: int = Field(gt=0, lt=2**63, description="unix seconds")


class ApiKeySpec(_CamelSpec):
    tenant: Name
    project: Name | None = None
    routes: list[Name] = Field(default_factory=list, description="allowed routes; empty: the tenant's")
    hash: KeyHash
    hint: str = ""
    expires_at: int | None = Field(default=None, ge=0, description="unix seconds")
    budget: Budget | None = None
    rate_limits: RateLimit | None = None
    # Optional blocks default to None (not []) so that keys written before they existed keep their canonical JSON.
    previous_secrets: list[PreviousSecret] | None = Field(
        default=None, description="secrets replaced by `gatectl keys rotate`, each accepted until its expiry")
    revoked_at: int | None = Field(default=None, ge=0, description="unix seconds; a revoked key is refused")

    @model_validator(mode="after")
    def _distinct_hashes(self) -> ApiKeySpec:
        hashes = [self.hash, *(p.hash for p in self.previous_secrets or ())]
        if len(set(hashes)) != len(hashes):
            raise ValueError("previousSecrets repeats a hash (or the current one)")
        return self


class CredentialRef(_CamelSpec):
    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Timeouts(_CamelSpec):
    connect_seconds: float = Field(default=5.0, gt=0, le=300)
    read_seconds: float = Field(default=120.0, gt=0, le=3600)


class Compliance(_CamelSpec):
    dpa_signed: bool = False
    retention_days: int = Field(default=0, ge=0)


class MockSpec(_CamelSpec):
    delay_ms: int = Field(default=0, ge=0, le=600_000)
    tokens_per_second: int = Field(default=0, ge=0)


ProviderType = Literal["openai", "azure", "anthropic", "bedrock", "gemini", "vertex", "mock"]
# The endpoint a provider type has when policy names none (``baseUrl`` replaces it: a VPC endpoint, a test server).
DEFAULT_BASE_URLS = {
    "bedrock": "https://bedrock-runtime.{aws_region}.amazonaws.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "vertex": "https://{gcp_location}-aiplatform.googleapis.com",
}


class ProviderSpec(_CamelSpec):
    type: ProviderType
    base_url: str = ""
    region: Region
    credential: CredentialRef | None = None
    api_version: str = ""
    aws_region: str = Field(default="", pattern=r"^([a-z]{2}(-gov)?-[a-z]+-\d)?$", description="bedrock")
    aws_profile: str = Field(default="", description="bedrock: a shared-config profile on the data plane")
    gcp_project: str = Field(default="", description="vertex")
    gcp_location: str = Field(default="", pattern=r"^([a-z]+-[a-z]+\d*|global)?$", description="vertex")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    compliance: Compliance = Field(default_factory=Compliance)
    mock: MockSpec = Field(default_factory=MockSpec)

    @model_validator(mode="after")
    def _check_url(self) -> ProviderSpec:
        if self.type == "bedrock" and not self.aws_region:
            raise ValueError("awsRegion is required for bedrock providers (e.g. eu-central-1)")
        if self.type == "vertex" and not (self.gcp_project and self.gcp_location):
            raise ValueError("gcpProject and gcpLocation are required for vertex providers")
        if self.type in DEFAULT_BASE_URLS and not self.base_url:
            return self
        if self.type != "mock" and not re.match(r"^https?://[^\s/]+", self.base_url):
            raise ValueError("baseUrl must be an http(s) URL for providers that are not of type mock")
        if self.type == "azure" and not self.api_version:
            raise ValueError("apiVersion is required for azure providers")
        return self


class Pricing(_CamelSpec):
    """USD per million tokens, as decimals (``"0.15"``, at most six decimals); compiled to integer micro-dollars per
    million tokens, which is pico-dollars per token (``tollway.money``). One price per token kind billed."""

    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0)
    cached_input_per_million: Decimal | None = Field(default=None, ge=0, description="cache reads; default input")
    cache_write_per_million: Decimal | None = Field(default=None, ge=0, description="cache writes; default input")
    cache_write_1h_per_million: Decimal | None = Field(
        default=None, ge=0, alias="cacheWrite1hPerMillion",
        description="cache writes at the 1-hour rate; default cacheWritePerMillion")
    reasoning_output_per_million: Decimal | None = Field(
        default=None, ge=0, description="reasoning/thinking output; default outputPerMillion")

    @field_validator("input_per_million", "output_per_million", "cached_input_per_million",
                     "cache_write_per_million", "cache_write_1h_per_million", "reasoning_output_per_million")
    @classmethod
    def _micro_precision(cls, value: Decimal | None) -> Decimal | None:
        return _check_usd(value)


class EmbeddingSpec(_CamelSpec):
    """Deployments of one ``family`` produce comparable vectors (the same model, wherever it is served)."""

    family: Name
    dimensions: int = Field(gt=0, le=65_536)


class ModelSpec(_CamelSpec):
    """A deployment: one provider's model, with what it serves, what it can do and what it costs."""

    provider: Name
    upstream_model: str = Field(min_length=1)
    serves: list[Surface] = Field(default_factory=lambda: list[Surface](["chat"]), min_length=1)
    capabilities: list[Capability] = Field(default_factory=list)
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(default=0, ge=0, description="required for chat, responses and completions")
    embedding: EmbeddingSpec | None = Field(default=None, description="required when serving embeddings")
    pricing: Pricing

    @model_validator(mode="after")
    def _check_surfaces(self) -> ModelSpec:
        if len(set(self.serves)) != len(self.serves):
            raise ValueError("serves lists a surface twice")
        if GENERATIVE.intersection(self.serves) and self.max_output_tokens == 0:
            raise ValueError("maxOutputTokens is required for a model that serves chat, responses or completions")
        if ("embeddings" in self.serves) != (self.embedding is not None):
            raise ValueError("embedding (family, dimensions) is required exactly when the model serves embeddings")
        return self


class FailoverSpec(_CamelSpec):
    attempts: int = Field(default=2, ge=1, le=10)
    attempt_timeout_seconds: float = Field(default=60.0, gt=0)
    total_timeout_seconds: float = Field(default=120.0, gt=0)
    on: list[FailoverOn] = Field(default_factory=lambda: list(_ALL_FAILOVER))


RouteKind = Literal["chat", "embeddings"]


class RouteSpec(_CamelSpec):
    kind: RouteKind = Field(default="chat", description="chat (every generative surface) or embeddings")
    models: list[Name] = Field(min_length=1, description="candidate deployments (Model names)")
    strategy: Literal["cheapest", "priority", "weighted", "latency"] = "cheapest"
    weights: list[int] = Field(default_factory=list)
    failover: FailoverSpec = Field(default_factory=FailoverSpec)

    @model_validator(mode="after")
    def _check_weights(self) -> RouteSpec:
        if self.strategy == "weighted" and len(self.weights) != len(self.models):
            raise ValueError("weighted routes need one weight per model")
        return self


class _Resource(_Spec):
    api_version: Literal["tollway.dev/v1"] = Field(alias="apiVersion")
    metadata: Metadata

    @property
    def name(self) -> str:
        return self.metadata.name


class Tenant(_Resource):
    kind: Literal["Tenant"]
    spec: TenantSpec


class ApiKey(_Resource):
    kind: Literal["ApiKey"]
    spec: ApiKeySpec


class Provider(_Resource):
    kind: Literal["Provider"]
    spec: ProviderSpec


class Model(_Resource):
    kind: Literal["Model"]
    spec: ModelSpec


class Route(_Resource):
    kind: Literal["Route"]
    spec: RouteSpec


Resource = Annotated[Tenant | ApiKey | Provider | Model | Route, Field(discriminator="kind")]
Kind = Literal["Tenant", "ApiKey", "Provider", "Model", "Route"]
KINDS: tuple[Kind, ...] = ("Tenant", "ApiKey", "Provider", "Model", "Route")
# Plural and short names accepted by `gatectl get`/`delete`.
KIND_ALIASES: dict[str, Kind] = {
    **{k.lower(): k for k in KINDS},
    **{k.lower() + "s": k for k in KINDS},
    "key": "ApiKey",
    "keys": "ApiKey",
    "apikey": "ApiKey",
    "deployment": "Model",
    "deployments": "Model",
}


class ResourceEnvelope(BaseModel):
    """Parses any supported document; the discriminator picks the kind."""

    model_config = ConfigDict(frozen=True)
    resource: Resource


def parse_resource(document: dict[str, Any]) -> Tenant | ApiKey | Provider | Model | Route:
    """Validate one document. Raises ``pydantic.ValidationError`` naming the offending field."""
    return ResourceEnvelope.model_validate({"resource": document}).resource


def dump_resource(resource: Tenant | ApiKey | Provider | Model | Route) -> dict[str, Any]:
    """The canonical JSON form (camelCase, defaults included, unset optional blocks left out), stable for hashing
    and diffing."""
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)
