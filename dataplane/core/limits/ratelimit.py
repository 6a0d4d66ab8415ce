"""Rate limits: token buckets per scope, each run at this data plane's share of a fleet-wide limit.

Limits come from the snapshot in requests and tokens per minute (0: unlimited) for four kinds of scope: the
whole tenant, each user of a tenant (requests without a user are not subject to it), each route (model) of a
tenant, and each API key. ``check`` takes 1 from every applicable requests bucket and the request's estimated
tokens from every tokens bucket, all or nothing, in O(1) (at most four scopes, two buckets each).

Buckets. Capacity is one minute of the local rate (declared limit times share) and refills continuously, so a
quiet scope may burst a minute's worth at once, as OpenAI's own limits do. A request needs
``min(cost, capacity)`` in the bucket, so a request estimated larger than the whole bucket still passes when
the bucket is full (the estimate is deliberately high; refusing it forever would be wrong) and drives the bucket
into debt. Tokens are reconciled by ``record``: the difference between the upstream's actual total tokens and
the estimate is refunded or charged, and a charge may push the level below zero (debt, floored at -capacity, so
one huge answer blocks a scope for at most about two minutes). Over any long window the admitted tokens are
therefore the actual tokens, not the estimates. A request refused later (e.g. by the budget) is ``release``d:
both its request and its tokens come back.

Fleet shares, after Google's Doorman: each data plane reports its observed demand per scope (``demand``,
requests/s and tokens/s, exponentially weighted, counting refused requests too: it is the offered load), the
control plane splits every limit between data planes and grants shares with an expiry (``set_shares``). A
scope's local rate is limit times share. The share of a scope is:
- never leased: 1.0. A lone data plane then enforces the declared limit exactly; a fleet whose control plane has
  never answered admits up to N times the limit, the price of not refusing traffic before the first lease.
- leased: the granted share; scopes the grant does not list (new users, say) get 1/N, N the fleet size sent with
  the grant (while no grant has sent one: 1.0).
- lease expired: every scope falls back to 1/N of the last known N, so the fleet as a whole stays at the limit
  while the control plane is away (exceeded only by data planes that start during the outage, at 1.0 each).
  While N was never sent, each scope keeps its last granted share instead: those summed to at most 1 across
  the fleet when granted, so the bound holds as well, though the split no longer follows demand.
A share change keeps each bucket's level (clamped to the new capacity): a share that grows gives headroom at the
new rate, never as an instant lump, so shares that move with demand cannot leak extra admissions.

Policy changes (``configure``) keep the buckets of scopes that still have a limit, levels clamped to the new
capacity; a tighter limit binds on the next request and a looser one refills at its new rate from then on.

Not thread-safe: one event loop owns a RateLimiter and makes every call. Idle scopes (whose buckets would be full
again) are dropped by a sweep every ``SWEEP_INTERVAL_S``, amortised O(1) per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from dataplane.core.limits.rate_table import LimitTable, RateLimit, RateScope
from dataplane.core.limits.reset_text import format_reset
from dataplane.errors import ApiError

Dimension = Literal["requests", "tokens"]

DEMAND_TAU_S = 10.0  # time constant of the demand average
SWEEP_INTERVAL_S = 30.0
IDLE_DROP_S = 180.0  # > the 120 s a bucket in full debt needs to refill: a dropped bucket was full anyway
RETRY_CAP_S = 60.0  # Retry-After when a scope has no capacity at all here (share 0)


class _Bucket:
    """One token bucket. ``level`` may be negative (debt from reconciliation)."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, per_minute: int, share: float, now: float) -> None:
        self.capacity = per_minute * share
        self.rate = self.capacity / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def resize(self, per_minute: int, share: float, now: float) -> None:
        self.refill(now)
        self.capacity = per_minute * share
        self.rate = self.capacity / 60.0
        self.level = min(self.level, self.capacity)

    def need(self, cost: float) -> float:
        return min(cost, self.capacity)

    def short(self, cost: float) -> bool:
        """Too low (or no capacity at all) to take ``cost`` now (refill first)."""
        return self.capacity <= 0 or self.level < min(cost, self.capacity)

    def wait_s(self, need: float) -> float:
        """Seconds until the level reaches ``need``."""
        if self.rate <= 0:
            return RETRY_CAP_S
        return max(0.0, (need - self.level) / self.rate)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again (OpenAI's "reset")."""
        return 0.0 if self.rate <= 0 else max(0.0, (self.capacity - self.level) / self.rate)

    def charge(self, amount: float) -> None:
        """Take (or refund, when negative) ``amount`` after the fact; debt is floored at -capacity."""
        self.level = min(self.capacity, max(self.level - amount, min(self.level, -self.capacity)))


class _ScopeState:
    __slots__ = ("demand_at", "demand_requests", "demand_tokens", "limit", "refused", "requests", "scope", "seen",
                 "tokens")

    def __init__(self, scope: RateScope, limit: RateLimit, share: tuple[float, float], now: float) -> None:
        self.scope = scope
        self.limit = limit
        self.requests = _Bucket(limit.requests_per_minute, share[0], now) if limit.requests_per_minute else None
        self.tokens = _Bucket(limit.tokens_per_minute, share[1], now) if limit.tokens_per_minute else None
        self.demand_requests = 0.0  # decayed sums; rate = sum / tau
        self.demand_tokens = 0.0
        self.demand_at = now
        self.seen = now
        self.refused = 0  # requests this scope refused while its buckets lived here (the control plane alerts)

    def reconfigure(self, limit: RateLimit, share: tuple[float, float], now: float) -> None:
        self.limit = limit
        self.requests = _resized(self.requests, limit.requests_per_minute, share[0], now)
        self.tokens = _resized(self.tokens, limit.tokens_per_minute, share[1], now)

    def offer(self, requests: float, tokens: float, now: float) -> None:
        if now > self.demand_at:
            decay = math.exp((self.demand_at - now) / DEMAND_TAU_S)
            self.demand_requests *= decay
            self.demand_tokens *= decay
            self.demand_at = now
        self.demand_requests += requests
        self.demand_tokens = max(0.0, self.demand_tokens + tokens)

    def demand(self, now: float) -> tuple[float, float]:
        decay = math.exp(min(0.0, self.demand_at - now) / DEMAND_TAU_S) / DEMAND_TAU_S
        return self.demand_requests * decay, self.demand_tokens * decay


def _resized(bucket: _Bucket | None, per_minute: int, share: float, now: float) -> _Bucket | None:
    if not per_minute:
        return None
    if bucket is None:
        return _Bucket(per_minute, share, now)
    bucket.resize(per_minute, share, now)
    return bucket


@dataclass(unsafe_hash=True)
class Quota:
    """One dimension of the tightest scope, for the ``x-ratelimit-*`` headers."""

    limit: Final[int]  # the declared, fleet-wide limit per minute
    remaining: Final[int]  # what this data plane will still admit now
    reset_s: Final[float]  # until this data plane's bucket is full again

    def __init__(self, limit: int, remaining: int, reset_s: float) -> None:
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s


@dataclass(unsafe_hash=True)
class Ticket:
    """An admission by the rate limiter: what to reconcile (``record``) or give back (``release``)."""

    states: Final[tuple[_ScopeState, ...]]
    tokens: Final[int]  # the estimate taken from every tokens bucket
    requests_quota: Final[Quota | None]
    tokens_quota: Final[Quota | None]

    def __init__(self, states: tuple[_ScopeState, ...], tokens: int, requests_quota: Quota | None,
                 tokens_quota: Quota | None) -> None:
        self.states = states
        self.tokens = tokens
        self.requests_quota = requests_quota
        self.tokens_quota = tokens_quota


@dataclass(unsafe_hash=True)
class RateLimited:
    """A refusal: the scope and dimension that ran out, and when to retry."""

    scope: Final[RateScope]
    dimension: Final[Dimension]
    quota: Final[Quota]
    retry_after_s: Final[float]

    def __init__(self, scope: RateScope, dimension: Dimension, quota: Quota, retry_after_s: float) -> None:
        self.scope = scope
        self.dimension = dimension
        self.quota = quota
        self.retry_after_s = retry_after_s

    def error(self) -> ApiError:
        message = (f"{self.scope.describe()} {self.dimension} per minute limit ({self.quota.limit}) reached; "
                   f"try again in {format_reset(self.retry_after_s)}")
        return ApiError(429, message, "rate_limit_error", "rate_limit_exceeded")


class RateLimiter:
    """The token buckets of one data plane. Owned by one event loop; see the module docstring."""

    def __init__(self, table: LimitTable | None = None, clock: Callable[[], float] = time.time) -> None:
        self._table = table or LimitTable()
        self._clock = clock
        self._states: dict[RateScope, _ScopeState] = {}
        self._granted: dict[str, tuple[float, float]] = {}
        self._default: tuple[float, float] = (1.0, 1.0)
        self._fleet_known = False
        self._expires_at = math.inf
        self._next_sweep = 0.0

    @property
    def table(self) -> LimitTable:
        return self._table

    def configure(self, table: LimitTable, now: float) -> None:
        """Install the limits of a new snapshot, keeping the buckets of scopes that still have a limit."""
        self._table = table
        for scope, state in list(self._states.items()):
            limit = table.limit(scope)
            if limit is None:
                del self._states[scope]
            elif limit != state.limit:
                state.reconfigure(limit, self._share(scope), now)

    def check(self, tenant: str, user: str, route: str, key_id: str, tokens: int, now: float) -> Ticket | RateLimited:
        """Admit (taking 1 request and ``tokens`` from every applicable bucket) or refuse, taking nothing."""
        if now >= self._expires_at:
            self._expire(now)
        if now >= self._next_sweep:
            self._sweep(now)
        applicable = self._table.applicable(tenant, user, route, key_id)
        if not applicable:
            return Ticket((), tokens, None, None)
        states = []
        refusal: RateLimited | None = None
        for scope, limit in applicable:
            state = self._states.get(scope)
            if state is None:
                state = self._states[scope] = _ScopeState(scope, limit, self._share(scope), now)
            state.offer(1.0, tokens, now)
            state.seen = now
            states.append(state)
            # A bucket with room costs a refill and a comparison; only a short one makes a refusal.
            if (bucket := state.requests) is not None:
                bucket.refill(now)
                if bucket.short(1):
                    refusal = _worse(refusal, bucket, scope, "requests", 1, limit.requests_per_minute)
            if (bucket := state.tokens) is not None:
                bucket.refill(now)
                if bucket.short(tokens):
                    refusal = _worse(refusal, bucket, scope, "tokens", tokens, limit.tokens_per_minute)
        if refusal is not None:
            self._states[refusal.scope].refused += 1
            return refusal
        # The headers' quota per dimension: the scope with the least remaining (then the lowest declared limit).
        requests_at: tuple[int, int, _Bucket] | None = None
        tokens_at: tuple[int, int, _Bucket] | None = None
        for state in states:
            if (bucket := state.requests) is not None:
                bucket.level -= 1
                left = max(0, math.floor(bucket.level))
                declared = state.limit.requests_per_minute
                if requests_at is None or (left, declared) < requests_at[:2]:
                    requests_at = (left, declared, bucket)
            if (bucket := state.tokens) is not None:
                bucket.level -= tokens
                left = max(0, math.floor(bucket.level))
                declared = state.limit.tokens_per_minute
                if tokens_at is None or (left, declared) < tokens_at[:2]:
                    tokens_at = (left, declared, bucket)
        return Ticket(tuple(states), tokens, _quota(requests_at), _quota(tokens_at))

    def record(self, ticket: Ticket, total_tokens: int, now: float) -> None:
        """Reconcile a ticket's estimate with the tokens the upstream reported (refund or charge the difference)."""
        diff = total_tokens - ticket.tokens
        if not diff:
            return
        for state in ticket.states:
            state.offer(0.0, diff, now)
            if state.tokens is not None:
                state.tokens.refill(now)
                state.tokens.charge(diff)

    def release(self, ticket: Ticket, now: float) -> None:
        """Give back everything a ticket took: the request was refused after the rate limits admitted it."""
        for state in ticket.states:
            if state.requests is not None:
                state.requests.refill(now)
                state.requests.charge(-1)
            if state.tokens is not None:
                state.tokens.refill(now)
                state.tokens.charge(-ticket.tokens)

    def demand(self) -> dict[str, tuple[float, float]]:
        """Observed (requests/s, tokens/s) per limited scope, exponentially weighted (tau = DEMAND_TAU_S)."""
        now = self._clock()
        return {scope.id: state.demand(now) for scope, state in self._states.items()}

    def refusals(self) -> dict[str, int]:
        """Requests refused per limited scope id so far (cumulative; restarts at 0 when a scope is swept)."""
        return {scope.id: state.refused for scope, state in self._states.items() if state.refused}

    def set_shares(self, shares: Mapping[str, tuple[float, float]], expires_at: float,
                   fleet_size: int | None = None) -> None:
        """Install a lease: per scope id, this data plane's (requests, tokens) share of the limit, in [0, 1].

        ``fleet_size`` (the number of data planes sharing the limits) sets the share of unlisted scopes and the
        fallback after expiry (1/N); without it the last known N stays, and if none is known the shares of the
        expired lease stay in force (see the module docstring).
        """
        now = self._clock()
        if fleet_size is not None and fleet_size >= 1:
            self._default = (1.0 / fleet_size, 1.0 / fleet_size)
            self._fleet_known = True
        self._granted = {scope: (_fraction(r), _fraction(t)) for scope, (r, t) in shares.items()}
        self._expires_at = expires_at
        if now >= expires_at:
            self._expire(now)
            return
        self._apply_shares(now)

    def share(self, scope_id: str) -> tuple[float, float]:
        """The share a scope runs at now (lease expiry is applied by ``check``)."""
        return self._granted.get(scope_id, self._default)

    def _share(self, scope: RateScope) -> tuple[float, float]:
        return self._granted.get(scope.id, self._default)

    def _apply_shares(self, now: float) -> None:
        for scope, state in self._states.items():
            share = self._share(scope)
            state.requests = _resized(state.requests, state.limit.requests_per_minute, share[0], now)
            state.tokens = _resized(state.tokens, state.limit.tokens_per_minute, share[1], now)

    def _expire(self, now: float) -> None:
        if self._fleet_known:
            self._granted = {}  # 1/N everywhere; else the last granted shares stand (see the module docstring)
        self._expires_at = math.inf
        self._apply_shares(now)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL_S
        idle = [scope for scope, state in self._states.items() if now - state.seen > IDLE_DROP_S]
        for scope in idle:
            del self._states[scope]


def _worse(refusal: RateLimited | None, bucket: _Bucket, scope: RateScope, dimension: Dimension, cost: int,
           declared: int) -> RateLimited:
    """``refusal``, or this (refilled, short) bucket's refusal if it makes the client wait longer."""
    wait = bucket.wait_s(bucket.need(cost)) if bucket.capacity > 0 else RETRY_CAP_S
    if refusal is not None and refusal.retry_after_s >= wait:
        return refusal
    return RateLimited(scope, dimension, Quota(declared, max(0, math.floor(bucket.level)), bucket.reset_s()), wait)


def _fraction(value: float) -> float:
    return min(1.0, max(0.0, value)) if value == value else 0.0  # NaN -> 0


def _quota(at: tuple[int, int, _Bucket] | None) -> Quota | None:
    if at is None:
        return None
    left, declared, bucket = at
    return Quota(declared, left, bucket.reset_s())
