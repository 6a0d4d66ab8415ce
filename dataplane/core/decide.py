"""The pure request decision: parse, authenticate, validate, authorize and plan a chat completion.

``decide(facts)`` returns a ``RoutePlan`` (who asks, which route, which deployments to try in order) or an
``ApiError`` (the refusal to show). No I/O, no clock, no randomness of its own: the ``RequestFacts`` a handler
gathers once (the runtime it read, the credential, the body, both clocks, a uniform ``pick`` in [0, 1) for
weighted routes, and the deployments' ``Health``, read only: demotion of ejected candidates, latencies) are the
whole input, so every branch is testable without an event loop. ``authenticate`` alone serves
``GET /v1/models``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

from dataplane.core.health import Health
from dataplane.core.validate import (
    HubRequest,
    Surface,
    validate_chat,
    validate_completions,
    validate_embeddings,
    validate_moderations,
)
from dataplane.errors import ApiError, invalid
from dataplane.snapshot.runtime import Deployment, Key, Route, Runtime
from tollway.keyformat import KEY_LEN, PREFIX, is_well_formed

# Output tokens assumed when ranking by expected cost and the client gave no max_tokens.
DEFAULT_EXPECTED_OUTPUT_TOKENS = 256
# Bound of the memo of verified key hashes (see ``authenticate``): cleared whole when full.
_MAX_CHECKED = 10_000


@dataclass(unsafe_hash=True)
class RequestFacts:
    """What a handler knows of one request before deciding it, gathered once. Immutable, except ``checked``:
    the data plane's memo of verified key hashes, which ``authenticate`` may add to (on the event loop)."""

    runtime: Final[Runtime]  # the snapshot the request reads, once, to its end
    authorization: Final[str | None]  # ``Authorization`` (or the dialect's key header, as a Bearer value)
    body: Final[bytes]
    now: Final[float]  # unix seconds
    pick: Final[float]  # uniform in [0, 1): the weighted routes' draw
    health: Final[Health | None]  # deployments' health, read only
    mono: Final[float]  # the monotonic clock ``health`` runs on
    checked: Final[set[bytes] | None]

    def __init__(self, runtime: Runtime, authorization: str | None, body: bytes, now: float, pick: float = 0.0,
                 health: Health | None = None, mono: float = 0.0, checked: set[bytes] | None = None) -> None:
        self.runtime = runtime
        self.authorization = authorization
        self.body = body
        self.now = now
        self.pick = pick
        self.health = health
        self.mono = mono
        self.checked = checked


@dataclass(unsafe_hash=True)
class RoutePlan:
    """An allowed request: the caller, its route and the deployments to try, in order (failover included)."""

    key: Final[Key]
    route: Final[Route]
    request: Final[HubRequest]
    candidates: Final[tuple[Deployment, ...]]

    def __init__(self, key: Key, route: Route, request: HubRequest, candidates: tuple[Deployment, ...]) -> None:
        self.key = key
        self.route = route
        self.request = request
        self.candidates = candidates


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "invalid_request_error", "invalid_api_key")


def authenticate(runtime: Runtime, authorization: str | None, now: float,
                 checked: set[bytes] | None = None) -> Key | ApiError:
    """The key behind an ``Authorization: Bearer tw_...`` header, or a 401.

    ``checked``, when given, remembers the hashes of keys whose checksum was verified, so a key's checksum is
    computed once rather than on every request (the same hash means the same secret).
    """
    if not authorization:
        return _unauthorized("missing API key: send 'Authorization: Bearer tw_...'")
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return _unauthorized("the Authorization header must be 'Bearer <api key>'")
    # Shape first: a typo or a foreign key never costs a hash or a lookup.
    if len(secret) != KEY_LEN or not secret.startswith(PREFIX) or not secret.isascii():
        return _unauthorized("incorrect API key provided")
    digest = hashlib.sha256(secret.encode("ascii")).digest()
    verified = checked is not None and digest in checked
    if not verified and not is_well_formed(secret):
        return _unauthorized("incorrect API key provided")
    key = runtime.keys.get(digest)
    if key is None or not hmac.compare_digest(key.hash, digest):
        return _unauthorized("incorrect API key provided")
    if checked is not None and not verified:
        if len(checked) >= _MAX_CHECKED:
            checked.clear()
        checked.add(digest)
    if key.is_expired(now):
        return _unauthorized("API key expired")
    return key


def expected_cost(dep: Deployment, prompt_tokens: int, output_tokens: int) -> int:
    """Micro-dollars times 1e6 (kept unscaled: only the order matters when ranking)."""
    return dep.prices.input * prompt_tokens + dep.prices.output * output_tokens


def order_candidates(route: Route, deployments: list[tuple[Deployment, int]], request: HubRequest,
                     pick: float, health: Health | None = None, mono: float = 0.0) -> list[Deployment]:
    """Attempt order by the route's strategy, then ``health`` demotes the unavailable candidates to the end
    (see ``dataplane.core.health``). ``deployments`` pairs each deployment with its weight; ``mono`` is the
    monotonic clock ``health`` runs on. O(candidates · log candidates)."""
    ordered: list[Deployment]
    if route.strategy == "cheapest":
        output = request.max_tokens or DEFAULT_EXPECTED_OUTPUT_TOKENS
        if health is None:
            ranked = sorted(enumerate(deployments), key=lambda item: (
                expected_cost(item[1][0], request.estimated_prompt_tokens, output), item[0]))
        else:
            # Ties in cost: the available one first, then the faster one, then the declared order.
            ranked = sorted(enumerate(deployments), key=lambda item: (
                expected_cost(item[1][0], request.estimated_prompt_tokens, output),
                not health.is_available(item[1][0], mono), health.ttfb(item[1][0]), item[0]))
        ordered = [d for _, (d, _w) in ranked]
    elif route.strategy == "latency" and health is not None:
        # Lowest observed time to first byte first; a deployment not measured yet (0) goes first, once, so
        # every candidate gets measured.
        ranked = sorted(enumerate(deployments), key=lambda item: (health.ttfb(item[1][0]), item[0]))
        ordered = [d for _, (d, _w) in ranked]
    else:
        ordered = _weighted(deployments, pick) if route.strategy == "weighted" else [d for d, _ in deployments]
    return health.demote(ordered, mono) if health is not None else ordered


def _weighted(deployments: list[tuple[Deployment, int]], pick: float) -> list[Deployment]:
    total = sum(w for _, w in deployments)
    if total > 0:
        threshold = pick * total
        for i, (dep, weight) in enumerate(deployments):
            threshold -= weight
            if threshold < 0:
                # The weighted choice first, the rest in declared order as failover.
                return [dep] + [d for j, (d, _w) in enumerate(deployments) if j != i]
    return [d for d, _ in deployments]


def decide(facts: RequestFacts, surface: Surface = "chat") -> RoutePlan | ApiError:
    """Everything before ``admit``: the plan for an OpenAI-dialect request of ``surface`` (by default
    ``POST /v1/chat/completions``), or why it is refused.

    ``facts.health`` (read only here) and ``facts.mono`` order the candidates as ``order_candidates`` says."""
    key = authenticate(facts.runtime, facts.authorization, facts.now, facts.checked)
    if isinstance(key, ApiError):
        return key
    try:
        payload: Any = orjson.loads(facts.body)
    except orjson.JSONDecodeError:
        return invalid("the request body is not valid JSON")
    return plan_for(facts, key, payload, surface)


_VALIDATORS: dict[str, Callable[[Any, int], HubRequest | ApiError]] = {
    "chat": validate_chat, "embeddings": validate_embeddings, "completions": validate_completions,
    "moderations": validate_moderations, "count_tokens": validate_chat,
}
# Provider types that take token-id arrays as embeddings input (OpenAI's API; the mock stands in for it).
_TOKEN_INPUT_TYPES = frozenset({"openai", "azure", "mock"})
# Provider types whose adapter passes a Responses API body through natively.
RESPONSES_NATIVE_TYPES = frozenset({"openai"})


def serves(deployment: Deployment, request: HubRequest) -> bool:
    """Whether ``deployment`` can serve ``request``'s surface (before capabilities and context)."""
    surfaces = deployment.surfaces
    if request.surface == "chat":
        return "chat" in surfaces or (request.dialect == "responses" and serves_responses_natively(deployment))
    if request.surface == "count_tokens":
        return "chat" in surfaces  # counted by the provider where it can, estimated elsewhere
    if request.surface == "embeddings" and "token_input" in request.needs:
        return "embeddings" in surfaces and deployment.provider.type in _TOKEN_INPUT_TYPES
    return request.surface in surfaces


def serves_responses_natively(deployment: Deployment) -> bool:
    return "responses" in deployment.surfaces and deployment.provider.type in RESPONSES_NATIVE_TYPES


def plan_for(facts: RequestFacts, key: Key, payload: Any, surface: Surface = "chat",
             native: dict[str, Any] | None = None, dialect: str = "") -> RoutePlan | ApiError:
    """The plan for an authenticated caller's ``payload`` of ``surface`` (the hub form of ``facts.body``).

    ``native`` (with its ``dialect``) is the client's own body, for deployments that speak that dialect."""
    request = _VALIDATORS[surface](payload, len(facts.body))
    if isinstance(request, ApiError):
        return request
    if surface != request.surface or native is not None:
        request = replace(request, surface=surface, native=native, dialect=dialect)
    return plan_request(facts, key, request)


@dataclass(frozen=True)
class Denial(ApiError):
    """A refusal by policy (``decide_route``) of a known caller's validated request: an ``ApiError`` like any
    other to its callers, which also says whose request it was and what it asked, so the refusal can be
    recorded as a decision (``dataplane.record``) and replayed (``controlplane.replay``)."""

    key: Key | None = None
    request: HubRequest | None = None


def plan_request(facts: RequestFacts, key: Key, request: HubRequest) -> RoutePlan | ApiError:
    """Authorize ``request`` for ``key`` and order its capable candidates (``decide_route``)."""
    decided = decide_route(facts.runtime, key, request, facts.pick, facts.health, facts.mono)
    if type(decided) is ApiError:  # a policy refusal: say whose, for the record
        return Denial(decided.status, decided.message, decided.type, decided.code, decided.param, key, request)
    return decided


def facts_request(model: str, surface: Surface, needs: frozenset[str], estimated_prompt_tokens: int,
                  max_tokens: int | None, stream: bool = False, dialect: str = "") -> HubRequest:
    """A request made of its recorded decision facts alone (no body): what ``decide_route`` reads of a
    ``HubRequest``, so a replay decides recorded traffic exactly as the data plane decided it."""
    return HubRequest({}, model, stream, False, max_tokens, estimated_prompt_tokens, needs, surface,
                      None, dialect)


def decide_route(runtime: Runtime, key: Key, request: HubRequest, pick: float = 0.0, health: Health | None = None,
                 mono: float = 0.0) -> RoutePlan | ApiError:
    """The decision core, over facts only: the caller's ``key`` (never its secret), the request's body-derived
    facts (model, surface, needs, prompt estimate, ``max_tokens``: nothing else of ``request`` is read), the
    weighted draw ``pick`` and the deployments' ``health`` (read only). The data plane and the replay
    (``controlplane.replay``) both call it: one implementation of policy."""
    route = runtime.routes.get(request.model)
    if route is None:
        if request.model in key.routes:
            return ApiError(403, f"model {request.model!r} is not served in region {runtime.region!r}",
                            "permission_error", "region_not_allowed", "model")
        return ApiError(404, f"the model {request.model!r} does not exist", "invalid_request_error",
                        "model_not_found", "model")
    if request.model not in key.routes:
        return ApiError(403, f"this API key may not use model {request.model!r}", "permission_error",
                        "model_not_allowed", "model")
    if (route.kind == "embeddings") != (request.surface == "embeddings"):
        what, hint = ("an embeddings", "/v1/embeddings") if route.kind == "embeddings" else \
            ("a chat", "a generation endpoint")
        return invalid(f"model {request.model!r} is {what} model: call it with {hint}", param="model",
                       code="model_not_supported")
    candidates = runtime.candidates_for(key.tenant.name, route.name)
    if not candidates:
        return ApiError(403, f"model {request.model!r} has no deployment in the regions your data may go to",
                        "permission_error", "region_not_allowed", "model")
    serving = [c for c in candidates if serves(c.deployment, request)]
    if not serving:
        if "token_input" in request.needs:
            return invalid(f"model {request.model!r} does not accept token ids as input here: send text",
                           param="input", code="unsupported_input")
        return invalid(f"model {request.model!r} has no deployment here that serves {request.surface}",
                       param="model", code="model_not_supported")
    needs = request.needs - _INPUT_NEEDS
    capable = [(c.deployment, c.weight) for c in serving if needs <= c.deployment.capabilities]
    if not capable:
        missing = sorted(needs - set().union(*(c.deployment.capabilities for c in serving)))
        feature = missing[0] if missing else sorted(needs)[0]
        return invalid(f"model {request.model!r} does not support {', '.join(missing) or feature}",
                       param=_CAPABILITY_PARAM[feature], code="unsupported_capability")
    needed = request.estimated_prompt_tokens + (request.max_tokens or 0)
    fitting = [(d, w) for d, w in capable if not d.context_window or needed <= d.context_window]
    if not fitting:
        largest = max(d.context_window for d, _ in capable)
        return invalid(f"this request needs about {needed} tokens (prompt and requested output) but the largest "
                       f"context window of model {request.model!r} is {largest} tokens",
                       param=_PROMPT_PARAM.get(request.surface, "messages"), code="context_length_exceeded")
    ordered = order_candidates(route, fitting, request, pick, health, mono)
    if not ordered:  # every candidate lacks its credential here (``Health.demote`` dropped them): say which
        dep = fitting[0][0]
        why = health.credential_problem(dep) if health is not None else ""
        return ApiError(403, f"model {request.model!r} has no deployment this data plane holds a credential for "
                             f"(deployment {dep.name!r}: {why})", "permission_error", "no_credential", "model")
    return RoutePlan(key=key, route=route, request=request, candidates=tuple(ordered[: route.failover.attempts]))


_CAPABILITY_PARAM = {"tools": "tools", "vision": "messages", "json_mode": "response_format"}
_PROMPT_PARAM = {"embeddings": "input", "completions": "prompt", "moderations": "input"}
_INPUT_NEEDS = frozenset({"token_input"})  # needs about the input's form, not a catalog capability
