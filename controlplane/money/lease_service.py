"""The lease service: data planes ask for budget grants and rate shares (``Leases.Lease``, unary).

Budgets: each ask is answered from the ledger (``controlplane.money.ledger``) against the limit of the current compiled
policy, read from the publisher's snapshot of the asking data plane's region, so a new limit applies at the next
ask (about a second). Rate shares: ``RateBoard`` keeps, in memory, each data plane's reported demand per
fleet-wide rate scope and splits the fleet limit in proportion to demand, with a floor so an idle data plane can
still admit; reports older than ``3 * ttl`` no longer count. With several replicas each publishes its board and
reads the others' (``controlplane.ha.shared``, every ``ha_ttl / 3``), so a limit is split across the whole
fleet, not once per replica. Shares are not money: losing them with a restart costs only a few seconds of uneven
sharing.

Authentication: ``authorization: Bearer <data-plane token>`` in the call metadata, like the other services. This
module is the one place where ledger outcomes become gRPC statuses: a store failure is UNAVAILABLE (the data plane
keeps what it holds and asks again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from controlplane.grpc_auth import bearer, require_token
from controlplane.money.ledger import AskIn, Charge, Ledger
from controlplane.push.publisher import Publisher
from controlplane.store.base import StoreError
from tollway.budget_scopes import BudgetIndex, BudgetLimit, period_of
from tollway.money import micros_ceil, micros_floor, parse_pico, pico_text, record_cost_pico
from tollway.pb import leases_pb2 as lpb
from tollway.pb import leases_pb2_grpc as lgrpc
from tollway.pb import usage_pb2 as upb

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[lpb.LeaseRequest, lpb.LeaseResponse]
FLOOR_FRACTION = 0.1  # this share of every fleet limit is split evenly between live data planes


@dataclass(frozen=True, slots=True)
class _Demand:
    requests: float
    tokens: float
    seen: float


_INT64_MAX = 2**63 - 1


def _int64(micros: int) -> int:
    return min(micros, _INT64_MAX)


_NO_BUDGETS = BudgetIndex("", {}, {})

class RateBoard:
    """Demand per (rate scope, node) and the shares it implies. Task-safe on one event loop."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._demand: dict[str, dict[str, _Demand]] = {}
        # Demand other replicas' data planes reported there (``controlplane.ha.shared`` replaces it whole), so
        # a fleet limit is split across the whole fleet, not once per replica.
        self.remote: dict[str, dict[str, _Demand]] = {}

    def local(self) -> dict[str, dict[str, tuple[float, float, float]]]:
        """This replica's reports: scope -> node -> (requests/s, tokens/s, seen), for the other replicas."""
        return {scope: {n: (d.requests, d.tokens, d.seen) for n, d in nodes.items()}
                for scope, nodes in self._demand.items() if nodes}

    def set_remote(self, boards: list[dict[str, dict[str, tuple[float, float, float]]]]) -> None:
        merged: dict[str, dict[str, _Demand]] = {}
        for board in boards:
            for scope, nodes in board.items():
                into = merged.setdefault(scope, {})
                for n, (r, t, seen) in nodes.items():
                    if n not in into or into[n].seen < seen:
                        into[n] = _Demand(r, t, seen)
        self.remote = merged

    def report(self, node: str, scope: str, requests: float, tokens: float, now: float) -> None:
        self._demand.setdefault(scope, {})[node] = _Demand(max(0.0, requests), max(0.0, tokens), now)

    def share(self, node: str, scope: str, now: float) -> tuple[float, float]:
        nodes = self._demand.get(scope, {})
        live = {n: d for n, d in nodes.items() if d.seen + 3 * self.ttl_s >= now}
        for n in set(nodes) - set(live):
            del nodes[n]
        for n, d in self.remote.get(scope, {}).items():  # a node that moved here counts once, as reported here
            if n not in live and d.seen + 3 * self.ttl_s >= now:
                live[n] = d
        if node not in live:
            return (1.0, 1.0)
        return (_split(node, {n: d.requests for n, d in live.items()}),
                _split(node, {n: d.tokens for n, d in live.items()}))


def _split(node: str, demand: dict[str, float]) -> float:
    n = len(demand)
    floor = FLOOR_FRACTION / n
    total = sum(demand.values())
    if total <= 0:
        return 1.0 / n
    return floor + (1.0 - FLOOR_FRACTION) * demand[node] / total


class AlertFeed(Protocol):
    """What the lease service tells ``controlplane.alerts.duty.AlertDuty`` (cheap calls that never await)."""

    def budget_observed(self, period: str, scope: str, spent: int, limit: BudgetLimit, exceeded: bool) -> None: ...

    def rate_refusals(self, node: str, scope: str, count: int, now: float) -> None: ...


class LeaseServicer:
    """Serves ``Leases.Lease``. Registers with ``add_to(server)``. With ``alerts``, every ask's budget facts (and
    the data plane's count of requests refused as exhausted) and every rate scope's refusal count feed it."""

    def __init__(self, ledger: Ledger, publisher: Publisher, token: str, *,
                 clock: Callable[[], float] = time.time, alerts: AlertFeed | None = None) -> None:
        self._alerts = alerts
        self._ledger = ledger
        self._publisher = publisher
        self._expected = bearer(token)
        self._clock = clock
        self._indexes: dict[str, BudgetIndex] = {}  # region -> index of its latest snapshot
        self.rates = RateBoard(ledger.ttl_s)

    def add_to(self, server: grpc.aio.Server) -> None:
        lgrpc.add_LeasesServicer_to_server(self, server)

    def index(self, region: str) -> BudgetIndex:
        """The budgets of the region's current snapshot (rebuilt when its version changes)."""
        snap = self._publisher.snapshot(region)
        if snap is None:  # a region being compiled for the first time has no budgets yet
            return _NO_BUDGETS
        index = self._indexes.get(region)
        if index is None or index.version != snap.version:
            index = self._indexes[region] = BudgetIndex.of(snap)
        return index

    async def Lease(self, request: lpb.LeaseRequest, context: Context) -> lpb.LeaseResponse:  # generated name
        await require_token(context, self._expected)
        if not request.node_id or not request.incarnation:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a lease request must carry node_id and incarnation")
        now = self._clock()
        index = self.index(request.region)
        # Pico amounts when the data plane sends them, else its micro-dollar fields (an older data plane).
        asks = [(AskIn(a.scope, a.period, max(0, parse_pico(a.spent_pico, a.spent_micros)),
                       max(0, parse_pico(a.reserved_pico, a.reserved_micros)),
                       max(0, parse_pico(a.want_pico, a.want_micros)), a.release,
                       max(0, parse_pico(a.need_pico))), index.limit_of(a.scope))
                for a in request.budgets]
        try:
            answers = await self._ledger.lease(request.node_id, request.incarnation, asks, now)
        except StoreError as e:
            log.warning("budget lease for %s failed: %s", request.node_id, e)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "budget ledger unavailable; retry later")
        if self._alerts is not None:
            for (ask, limit), answer, raw in zip(asks, answers, request.budgets, strict=True):
                if limit is not None:
                    self._alerts.budget_observed(ask.period, ask.scope, answer.spent, limit, raw.exceeded_refusals > 0)
            for r in request.rates:
                self._alerts.rate_refusals(request.node_id, r.scope, r.refused, now)
        shares = []
        for r in request.rates:
            self.rates.report(request.node_id, r.scope, r.requests_per_s, r.tokens_per_s, now)
        for r in request.rates:
            req, tok = self.rates.share(request.node_id, r.scope, now)
            shares.append(lpb.RateShare(scope=r.scope, requests_fraction=req, tokens_fraction=tok))
        return lpb.LeaseResponse(
            budgets=[lpb.BudgetGrant(
                scope=a.scope, period=a.period, limited=a.limited,
                # An older data plane reads the micro-dollar fields: the floor of a grant never exceeds it.
                granted_micros=_int64(micros_floor(a.granted)), remaining_micros=_int64(micros_floor(a.remaining)),
                limit_micros=_int64(micros_floor(a.limit)), spent_micros=_int64(micros_ceil(a.spent)),
                granted_pico=pico_text(a.granted), remaining_pico=pico_text(a.remaining),
                limit_pico=pico_text(a.limit), spent_pico=pico_text(a.spent), ttl_s=a.ttl) for a in answers],
            shares=shares, ttl_s=self._ledger.ttl_s)

    async def settle_usage(self, batch: upb.UsageBatch) -> bool:
        """Move the batch's costs from its node's grants to ``spent``, once per batch (False: settled before).

        Raises ``StoreError``: the usage service then does not acknowledge the batch, and it comes back.
        """
        charges = []
        for r in batch.records:
            cost = record_cost_pico(r.cost_pico, r.cost_micros)
            if cost <= 0:
                continue
            for s in self.index(r.region).scopes_for(r.tenant, r.project, r.key_id, r.user):
                charges.append(Charge(period_of(r.timestamp_ms / 1000), s.name, s.limit, cost))
        return await self._ledger.settle_batch(batch.node_id, batch.epoch, batch.sequence, charges)
