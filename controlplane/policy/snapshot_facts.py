"""A compiled snapshot as the facts a data plane acts on, one flat mapping per object, for ``controlplane.policy.plan``.

Pure: no I/O, no clock. Each object of a region's snapshot (tenant, key, route, deployment, provider) becomes
``Facts``: field name → value, dotted names for nested settings (``budget.monthlyMicros``,
``routes.chat-fast``), fields at their zero value left out (a rate limit of 0 is no limit). Money stays in the
snapshot's integer units: budgets in micro-dollars (``…Micros``), prices in micro-dollars per million tokens
(``prices.*``). Times are ISO 8601 UTC strings.

Secrets never become facts: a key's hash and hint are left out (``plan`` compares hashes itself and says only
that a secret was replaced); a provider's credential is the *name* of the variable holding it.

A tenant's ``routes.<route>`` fact is the order in which a data plane of the region would try the route's
deployments for that tenant (``candidate_order``). The control plane may not import the data plane
(``tests/core/test_layering.py``), so this is computed from the snapshot the way ``dataplane.snapshot.runtime``
and ``dataplane.core.decide.order_candidates`` do it (a test holds the two together): the route's deployments
in declared order, filtered to the providers in the tenant's regions, then ordered by the strategy —
``cheapest`` by the expected cost of a nominal request (``NOMINAL_PROMPT_TOKENS`` in, the data plane's default
expectation of ``NOMINAL_OUTPUT_TOKENS`` out; ties in declared order), ``priority`` as declared, ``weighted``
as declared (the weighted draw picks the first per request; the weights are the route's facts), ``latency`` as
declared (the data plane reorders by measured time to first byte). What depends on one request (capabilities,
context window) or on health (ejected deployments go last) is not part of the order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime

from tollway.pb import snapshot_pb2 as pb

Value = str | int | float | bool | tuple[str, ...]
Facts = dict[str, Value]

NOMINAL_PROMPT_TOKENS = 1000
NOMINAL_OUTPUT_TOKENS = 256  # = dataplane.core.decide.DEFAULT_EXPECTED_OUTPUT_TOKENS (a test checks)


def iso(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _put(out: Facts, name: str, value: Value) -> None:
    """Set a fact unless it is at its zero value (absent and zero mean the same in a snapshot)."""
    if value:
        out[name] = value


def _budget(out: Facts, prefix: str, b: pb.Budget) -> None:
    out[f"{prefix}.monthlyMicros"] = b.monthly_micros
    _put(out, f"{prefix}.softPercent", b.soft_percent)
    _put(out, f"{prefix}.safeAllowanceMicros", b.safe_allowance_micros)
    _put(out, f"{prefix}.leaseSeconds", b.lease_seconds)


def _rate_limit(out: Facts, prefix: str, r: pb.RateLimit) -> None:
    _put(out, f"{prefix}.requestsPerMinute", r.requests_per_minute)
    _put(out, f"{prefix}.tokensPerMinute", r.tokens_per_minute)


def expected_cost(d: pb.Deployment) -> int:
    """The nominal request's cost on ``d``, unscaled (only the order matters)."""
    return d.prices.input * NOMINAL_PROMPT_TOKENS + d.prices.output * NOMINAL_OUTPUT_TOKENS


def candidate_order(route: pb.Route, regions: Collection[str], deployments: Mapping[str, pb.Deployment],
                    provider_regions: Mapping[str, str]) -> tuple[str, ...]:
    """The deployments of ``route`` a tenant of ``regions`` may reach, in the order a data plane tries them."""
    allowed = [(i, deployments[name]) for i, name in enumerate(route.deployments)
               if name in deployments and provider_regions.get(deployments[name].provider) in regions]
    if route.strategy == "cheapest":
        allowed.sort(key=lambda item: (expected_cost(item[1]), item[0]))
    return tuple(d.name for _, d in allowed)


def candidate_orders(snap: pb.Snapshot) -> dict[tuple[str, str], tuple[str, ...]]:
    """(tenant, route) → the tenant's candidates in order, for every route the tenant may use that has at least
    one candidate in its regions (the data plane's ``Runtime.tenant_candidates``, ordered)."""
    deployments = {d.name: d for d in snap.deployments}
    provider_regions = {p.name: p.region for p in snap.providers}
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for t in snap.tenants:
        regions, allowed = frozenset(t.regions), frozenset(t.routes)
        for r in snap.routes:
            if allowed and r.name not in allowed:
                continue
            order = candidate_order(r, regions, deployments, provider_regions)
            if order:
                out[(t.name, r.name)] = order
    return out


def tenant_facts(snap: pb.Snapshot) -> dict[str, Facts]:
    """Every tenant of the snapshot: residency, the candidate order of each route it may use, limits, budgets."""
    orders = candidate_orders(snap)
    out: dict[str, Facts] = {}
    for t in snap.tenants:
        facts: Facts = {
            "regions": tuple(t.regions),
            # Residency: the providers of this region's snapshot that may receive the tenant's data.
            "providers": tuple(f"{p.name} ({p.region})" for p in snap.providers if p.region in t.regions),
        }
        _put(facts, "projects", tuple(t.projects))
        _put(facts, "allowedRoutes", tuple(t.routes))
        for r in snap.routes:
            order = orders.get((t.name, r.name))
            if order:
                facts[f"routes.{r.name}"] = order
        if t.HasField("budget"):
            _budget(facts, "budget", t.budget)
        if t.HasField("per_user_budget"):
            _budget(facts, "perUserBudget", t.per_user_budget)
        for p in t.project_policies:
            _budget(facts, f"projects.{p.name}.budget", p.budget)
        _rate_limit(facts, "rateLimit", t.rate_limit)
        _rate_limit(facts, "perUserRateLimit", t.per_user_rate_limit)
        for limit in t.per_route_rate_limits:
            _rate_limit(facts, f"perRouteRateLimit.{limit.route}", limit.limit)
        _put(facts, "logging.content", t.logging.content)
        facts["logging.redactBeforeProvider"] = t.logging.redact_before_provider
        _put(facts, "logging.retentionDays", t.logging.retention_days)
        out[t.name] = facts
    return out


def key_facts(k: pb.ApiKey, retired_until: Iterable[int] = ()) -> Facts:
    """One key, without its hash or hint; ``retired_until``: when each of its rotated-out secrets stops working."""
    facts: Facts = {"tenant": k.tenant}
    _put(facts, "project", k.project)
    _put(facts, "routes", tuple(k.routes))
    if k.expires_at:
        facts["expiresAt"] = iso(k.expires_at)
    if k.HasField("budget"):
        _budget(facts, "budget", k.budget)
    _rate_limit(facts, "rateLimit", k.rate_limit)
    _put(facts, "previousSecretsUntil", tuple(iso(t) for t in sorted(retired_until)))
    return facts


def route_facts(r: pb.Route) -> Facts:
    facts: Facts = {"kind": r.kind or "chat", "strategy": r.strategy, "deployments": tuple(r.deployments)}
    if r.weights:
        facts["weights"] = tuple(f"{d}={w}" for d, w in zip(r.deployments, r.weights, strict=False))
    f = r.failover
    _put(facts, "failover.attempts", f.attempts)
    _put(facts, "failover.attemptTimeoutSeconds", f.attempt_timeout_s)
    _put(facts, "failover.totalTimeoutSeconds", f.total_timeout_s)
    _put(facts, "failover.on", tuple(f.on))
    return facts


def deployment_facts(d: pb.Deployment) -> Facts:
    facts: Facts = {"provider": d.provider, "upstreamModel": d.upstream_model}
    _put(facts, "surfaces", tuple(d.surfaces))
    _put(facts, "capabilities", tuple(d.capabilities))
    _put(facts, "contextWindow", d.context_window)
    _put(facts, "maxOutputTokens", d.max_output_tokens)
    if d.HasField("embedding"):
        _put(facts, "embedding.family", d.embedding.family)
        _put(facts, "embedding.dimensions", d.embedding.dimensions)
    p = d.prices
    facts["prices.input"] = p.input
    facts["prices.output"] = p.output
    facts["prices.cachedInput"] = p.cached_input
    # Unset (older snapshots) means "as input"/"as output": spell the price out so a plan shows what is charged.
    facts["prices.cacheWrite"] = p.cache_write if p.HasField("cache_write") else p.input
    facts["prices.cacheWrite1h"] = p.cache_write_1h if p.HasField("cache_write_1h") else facts["prices.cacheWrite"]
    facts["prices.reasoningOutput"] = p.reasoning_output if p.HasField("reasoning_output") else p.output
    return facts


def provider_facts(p: pb.Provider) -> Facts:
    facts: Facts = {"type": p.type, "region": p.region}
    for name, value in (("baseUrl", p.base_url), ("credentialEnv", p.credential_env), ("apiVersion", p.api_version),
                        ("awsRegion", p.aws_region), ("awsProfile", p.aws_profile), ("gcpProject", p.gcp_project),
                        ("gcpLocation", p.gcp_location), ("connectTimeoutSeconds", p.connect_timeout_s),
                        ("readTimeoutSeconds", p.read_timeout_s), ("mock.delayMs", p.mock.delay_ms),
                        ("mock.tokensPerSecond", p.mock.tokens_per_second)):
        _put(facts, name, value)
    return facts
