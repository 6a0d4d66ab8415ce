"""What a snapshot offers, in its runtime form: providers, their deployments (with prices), and the routes over
them. Value classes (``tests/core/test_values.py``), compiled with the request path (``dataplane.compiled``), so
the request path reads their fields as C slots; ``dataplane.snapshot.runtime`` builds them, off the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass(unsafe_hash=True)
class Prices:
    """Micro-dollars per million tokens = pico-dollars per token, per token kind (``tollway.money``). Made with
    ``Prices.of``, which resolves the kinds a snapshot may leave unpriced."""

    input: Final[int]
    output: Final[int]
    cached_input: Final[int]
    cache_write: Final[int]
    cache_write_1h: Final[int]
    reasoning_output: Final[int]

    def __init__(self, input: int, output: int, cached_input: int, cache_write: int, cache_write_1h: int,
                 reasoning_output: int) -> None:
        self.input = input
        self.output = output
        self.cached_input = cached_input
        self.cache_write = cache_write
        self.cache_write_1h = cache_write_1h
        self.reasoning_output = reasoning_output

    @classmethod
    def of(cls, input: int, output: int, cached_input: int, cache_write: int = -1, cache_write_1h: int = -1,
           reasoning_output: int = -1) -> Prices:
        """A negative price is unset: ``cache_write`` as ``input``, ``cache_write_1h`` as ``cache_write``,
        ``reasoning_output`` as ``output`` (older snapshots have no price for these kinds: they were billed as
        input and output)."""
        write = cache_write if cache_write >= 0 else input
        return cls(input, output, cached_input, write, cache_write_1h if cache_write_1h >= 0 else write,
                   reasoning_output if reasoning_output >= 0 else output)


@dataclass(unsafe_hash=True)
class Provider:
    name: Final[str]
    type: Final[str]
    base_url: Final[str]
    region: Final[str]
    connect_timeout_s: Final[float]
    read_timeout_s: Final[float]
    api_version: Final[str]
    mock_delay_ms: Final[int]
    mock_tokens_per_second: Final[int]
    # Resolved from the environment at build time; None when no credential is configured or the variable is
    # missing. repr=False keeps it out of any accidental log line or traceback.
    credential: str | None = field(repr=False)
    credential_env: Final[str]
    aws_region: Final[str]
    aws_profile: Final[str]
    gcp_project: Final[str]
    gcp_location: Final[str]

    def __init__(self, name: str, type: str, base_url: str, region: str, connect_timeout_s: float,
                 read_timeout_s: float, api_version: str, mock_delay_ms: int, mock_tokens_per_second: int,
                 credential: str | None, credential_env: str = "", aws_region: str = "", aws_profile: str = "",
                 gcp_project: str = "", gcp_location: str = "") -> None:
        self.name = name
        self.type = type
        self.base_url = base_url
        self.region = region
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.api_version = api_version
        self.mock_delay_ms = mock_delay_ms
        self.mock_tokens_per_second = mock_tokens_per_second
        self.credential = credential
        self.credential_env = credential_env
        self.aws_region = aws_region
        self.aws_profile = aws_profile
        self.gcp_project = gcp_project
        self.gcp_location = gcp_location


CHAT_ONLY: Final = frozenset({"chat"})


@dataclass(unsafe_hash=True)
class Deployment:
    name: Final[str]
    provider: Final[Provider]
    upstream_model: Final[str]
    capabilities: Final[frozenset[str]]
    context_window: Final[int]
    max_output_tokens: Final[int]
    prices: Final[Prices]
    surfaces: Final[frozenset[str]]  # what it serves (``runtime.SURFACES``)
    embedding_family: Final[str]  # deployments of one family produce comparable vectors
    embedding_dimensions: Final[int]

    def __init__(self, name: str, provider: Provider, upstream_model: str, capabilities: frozenset[str],
                 context_window: int, max_output_tokens: int, prices: Prices, surfaces: frozenset[str] = CHAT_ONLY,
                 embedding_family: str = "", embedding_dimensions: int = 0) -> None:
        self.name = name
        self.provider = provider
        self.upstream_model = upstream_model
        self.capabilities = capabilities
        self.context_window = context_window
        self.max_output_tokens = max_output_tokens
        self.prices = prices
        self.surfaces = surfaces
        self.embedding_family = embedding_family
        self.embedding_dimensions = embedding_dimensions


@dataclass(unsafe_hash=True)
class Failover:
    attempts: Final[int]
    attempt_timeout_s: Final[float]
    total_timeout_s: Final[float]
    on: Final[frozenset[str]]

    def __init__(self, attempts: int, attempt_timeout_s: float, total_timeout_s: float, on: frozenset[str]) -> None:
        self.attempts = attempts
        self.attempt_timeout_s = attempt_timeout_s
        self.total_timeout_s = total_timeout_s
        self.on = on


@dataclass(unsafe_hash=True)
class Candidate:
    deployment: Final[Deployment]
    weight: Final[int]

    def __init__(self, deployment: Deployment, weight: int) -> None:
        self.deployment = deployment
        self.weight = weight


@dataclass(unsafe_hash=True)
class Route:
    name: Final[str]
    strategy: Final[str]
    failover: Final[Failover]
    candidates: Final[tuple[Candidate, ...]]
    kind: Final[str]  # chat | embeddings

    def __init__(self, name: str, strategy: str, failover: Failover, candidates: tuple[Candidate, ...],
                 kind: str = "chat") -> None:
        self.name = name
        self.strategy = strategy
        self.failover = failover
        self.candidates = candidates
        self.kind = kind
