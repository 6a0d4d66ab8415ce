"""A fleet of two data planes sharing one tenant limit, over a simulated clock.

Each data plane is a ``LimitsGate`` with its own ``RateLimiter``; the test plays the control plane: every few
seconds it reads both planes' ``demand()``, splits the tenant limit between them max-min fairly (the way
Doorman does) and grants shares with an expiry through ``set_shares``. Traffic is uneven on purpose (one plane
gets four times the other's), so a static half-and-half split would under-admit and no split at all would
admit the sum of both planes' capacities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from dataplane.core.attribution import Attribution
from dataplane.core.decide import RoutePlan
from dataplane.core.gate import Admission
from dataplane.core.limits.limits_gate import LimitsGate
from dataplane.core.limits.ratelimit import RateLimiter
from dataplane.snapshot.runtime import Runtime
from tests.ratelimit.limits_snapshot import limited_snapshot, plan_for
from tollway.pb import snapshot_pb2 as pb

LIMIT_RPM = 600  # 10 requests/s for the whole fleet
OFFERED = (12.0, 3.0)  # requests/s offered to each data plane: 15/s in all
LEASE_EVERY_S = 5.0
LEASE_TTL_S = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def max_min_shares(demands: list[float], capacity: float) -> list[float]:
    """Max-min fair split of ``capacity`` by demand, then what is left evenly; as fractions summing to 1."""
    grants = [0.0] * len(demands)
    left = capacity
    pending = sorted(range(len(demands)), key=lambda i: demands[i])
    while pending:
        i = pending.pop(0)
        grants[i] = min(demands[i], left / (len(pending) + 1))
        left -= grants[i]
    grants = [g + left / len(grants) for g in grants]
    return [g / capacity for g in grants]


def grant(planes: list[RateLimiter], limits: Mapping[str, float], expires_at: float) -> None:
    """The control plane's part: per scope, split the limit (requests/s) by the planes' demands."""
    demands = [plane.demand() for plane in planes]
    shares: list[dict[str, tuple[float, float]]] = [{} for _ in planes]
    for scope, capacity in limits.items():
        split = max_min_shares([d.get(scope, (0.0, 0.0))[0] for d in demands], capacity)
        for i, share in enumerate(split):
            shares[i][scope] = (share, share)
    for plane, granted in zip(planes, shares, strict=True):
        plane.set_shares(granted, expires_at, fleet_size=len(planes))


@dataclass
class Run:
    admitted: list[list[float]]  # per plane, the times of admitted requests

    def count(self, start: float, end: float) -> int:
        return sum(start <= t < end for times in self.admitted for t in times)


def simulate(duration_s: float, lease_until_s: float) -> Run:
    """Offer ``OFFERED`` traffic for ``duration_s``; the control plane grants leases until ``lease_until_s``."""
    snap, keys = limited_snapshot(tenant=pb.RateLimit(requests_per_minute=LIMIT_RPM))
    clock = Clock()
    limiters = [RateLimiter(clock=clock) for _ in OFFERED]
    gates = [LimitsGate(limiter) for limiter in limiters]
    for gate in gates:
        assert gate.configure(snap) is None
    plan: RoutePlan = plan_for(Runtime.from_snapshot(snap), keys.acme_all)
    arrivals = sorted((i / rate, plane) for plane, rate in enumerate(OFFERED)
                      for i in range(math.ceil(duration_s * rate)))
    admitted: list[list[float]] = [[] for _ in OFFERED]
    next_lease = 0.0
    for t, plane in arrivals:
        while next_lease <= t and next_lease < lease_until_s:
            clock.now = next_lease
            grant(limiters, {"tenant/acme": LIMIT_RPM / 60}, next_lease + LEASE_TTL_S)
            next_lease += LEASE_EVERY_S
        clock.now = t
        if isinstance(gates[plane].admit(plan, Attribution(), t), Admission):
            admitted[plane].append(t)
    return Run(admitted)


def test_two_planes_admit_the_fleet_limit_within_ten_percent() -> None:
    run = simulate(duration_s=600.0, lease_until_s=math.inf)
    window = (60.0, 600.0)  # after the first minute's burst (one bucket shared between the planes)
    expected = LIMIT_RPM / 60 * (window[1] - window[0])
    total = run.count(*window)
    assert abs(total - expected) <= 0.1 * expected, (total, expected)
    # Demand-weighted: the busy plane got most of the limit, the quiet one all it asked for.
    quiet = sum(window[0] <= t < window[1] for t in run.admitted[1])
    assert quiet >= 0.9 * OFFERED[1] * (window[1] - window[0])


def test_while_the_control_plane_is_away_the_fleet_stays_at_most_at_the_limit() -> None:
    run = simulate(duration_s=600.0, lease_until_s=300.0)
    # Leases granted until 295 s expire at 310 s; from then on each plane runs at 1/N of the limit.
    window = (330.0, 600.0)
    limit = LIMIT_RPM / 60 * (window[1] - window[0])
    total = run.count(*window)
    assert total <= 1.1 * limit, (total, limit)
    busy = sum(window[0] <= t < window[1] for t in run.admitted[0])
    assert busy >= 0.9 * (LIMIT_RPM / 60 / 2) * (window[1] - window[0])  # half the limit, still served


def test_without_shares_each_plane_would_admit_the_whole_limit() -> None:
    # The control experiment: never leased, each plane runs at share 1.0 and the fleet overshoots; this is
    # what the two tests above would measure if set_shares did nothing.
    run = simulate(duration_s=600.0, lease_until_s=0.0)
    window = (60.0, 600.0)
    assert run.count(*window) > 1.2 * LIMIT_RPM / 60 * (window[1] - window[0])
