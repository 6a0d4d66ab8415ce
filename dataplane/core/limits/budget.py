"""Local budget allowances: reserve the worst case before forwarding, settle the real cost afterwards.

Pure over a clock (every method takes ``now``; no I/O, no asyncio). One ``BudgetBook`` per data plane keeps, per
budget scope and month, an ``Allowance``: the amount the control plane granted this process (cumulative for the
period, an absolute number from the last lease answer), what was settled and what is reserved by requests in
flight. A request is admitted only if its worst case fits in every scope it is charged to, so the sum of what
this process spends never exceeds what it was granted: the fleet invariant (spent + grants <= limit) lives in
the control plane's ledger (``controlplane.money.ledger``), the lease client (``dataplane.sync.leases``) moves grants
between the two.

Static stability across restarts: a book made ``durable`` spends only what it has *checked out*, an amount of its
grant written to disk before any of it is spent (``plan_checkout`` picks the next chunks, the data plane writes
them off the request path, ``commit_checkout`` makes them spendable). A process restarted while the control
plane is away ``restore``s its grants and checkouts, counts everything checked out as spent (it may have been),
and goes on serving from the rest of its unexpired grants; the incarnation it leases under is restored with them,
so the control plane sees the same holder. No disk write happens per request: one per chunk, off the loop.

When a grant expires (control plane unreachable past the lease's ttl) it is no longer used; the scope's
``safe_allowance_pico`` (per process and period, default 0) is all that may be spent until a new answer.

Task-safe on one event loop (methods never await); not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dataplane.errors import ApiError
from tollway.budget_scopes import BudgetIndex, BudgetLimit, BudgetScope, BudgetScopeKind, period_of
from tollway.money import usd
from tollway.pb import snapshot_pb2 as pb

DEFAULT_HORIZON_S = 10.0  # a grant should last about this long at the recent rate of reservations
MIN_WANT_DIVISOR = 20     # an idle process still asks for 1/20 of the limit, so its first requests pass
_DEMAND_HALF_LIFE_S = 5.0


@dataclass
class Allowance:
    """One scope in one period, as this process sees it. Mutable; owned by its ``BudgetBook``."""

    scope: str
    kind: BudgetScopeKind
    period: str
    limit: BudgetLimit
    granted: int = 0          # cumulative amount this process may spend in the period (last answer)
    expires_at: float = 0.0   # 0: no answer yet
    spent: int = 0            # settled against the grant
    reserved: int = 0         # held by requests in flight against the grant
    safe_spent: int = 0       # settled against the safe allowance (grant expired or missing)
    safe_reserved: int = 0
    remaining: int = -1       # what the fleet had left unallocated at the last answer (-1: unknown)
    limited: bool = True      # False: the control plane says no budget applies (e.g. removed from policy)
    shortfall: int = 0        # the largest worst case refused since the last ask
    need: int = 0             # the largest worst case reserved or refused in the period
    fleet_spent: int = 0      # settled fleet-wide, as of the last answer
    short_since: float = 0.0  # when the answers began leaving less than ``need`` here and in the pool (0: not short)
    window: int = 0           # pico-dollars reserved since ``window_start``
    window_start: float = 0.0
    rate: float = 0.0         # smoothed pico-dollars reserved per second
    exceeded: int = 0         # requests refused as exhausted (``*_budget_exceeded``): the control plane alerts

    checked_out: int = -1     # spendable ceiling persisted to disk (-1: not durable, the grant is the ceiling)

    def available(self, now: float) -> int:
        """What a new reservation may take from the grant (0 once it has expired)."""
        if not self.is_granted(now):
            return 0
        ceiling = self.granted if self.checked_out < 0 else min(self.granted, self.checked_out)
        return ceiling - self.spent - self.reserved

    def is_granted(self, now: float) -> bool:
        return self.expires_at > now

    def safe_available(self) -> int:
        return self.limit.safe_allowance_pico - self.safe_spent - self.safe_reserved


@dataclass(unsafe_hash=True)
class Hold:
    allowance: Final[Allowance]
    amount: Final[int]
    safe: Final[bool]  # taken from the safe allowance rather than the grant

    def __init__(self, allowance: Allowance, amount: int, safe: bool) -> None:
        self.allowance = allowance
        self.amount = amount
        self.safe = safe


@dataclass
class Reservation:
    """What one admitted request holds. Settle or release it exactly once."""

    holds: tuple[Hold, ...]
    done: bool

    def __init__(self, holds: tuple[Hold, ...], done: bool = False) -> None:
        self.holds = holds
        self.done = done


@dataclass(frozen=True)
class Ask:
    """What the lease client sends for one allowance (see ``leases.proto`` ``BudgetAsk``)."""

    scope: str
    period: str
    spent: int
    reserved: int
    want: int
    release: bool
    need: int = 0  # the largest worst case seen here: a grant smaller than this serves nothing
    exceeded: int = 0  # requests refused as exhausted in the period, so far


_NOTHING = Reservation(())


def _exceeded(kind: BudgetScopeKind, a: Allowance, worst_case: int) -> ApiError:
    return ApiError(
        429, f"the {kind} budget of ${usd(a.limit.monthly_pico)} for {a.period} is exhausted on this gateway "
             f"(this request may cost up to ${usd(worst_case)})",
        "insufficient_quota", f"{kind}_budget_exceeded")


LEASE_PENDING = "budget_lease_pending"  # the code of a refusal that the control plane's next grant may lift
# Room is left in the budget, but not in this data plane's grant (other data planes hold it): retryable, and
# never an exhaustion code. The request path waits for one lease answer before answering it.
REBALANCING = "budget_rebalancing"
WAITABLE = frozenset({LEASE_PENDING, REBALANCING})


def _rebalancing(kind: BudgetScopeKind, a: Allowance) -> ApiError:
    return ApiError(429, f"the {kind} budget for {a.period} has room, but this gateway's share of it is in use; "
                         "retry in a second", "rate_limit_error", REBALANCING)


# How long answers must keep leaving less than one request here and in the pool, while the control plane knows
# this data plane is short (so every other data plane has asked, and been told to yield, at least once): then the
# room is gone, not merely elsewhere. Above two of the other data planes' lease intervals (1 s): a yield frees the
# room at the yielder's next ask, and this data plane gets it at its own next one.
EXHAUSTED_AFTER_S = 3.5


def _is_exhausted(a: Allowance, worst_case: int, now: float) -> bool:
    """No room anywhere: what is settled fleet-wide (at least what this process settled) and reserved here leave
    less than ``worst_case`` of the limit, or the control plane kept answering short after the others yielded.
    Otherwise the room is held by other data planes' grants and will flow here."""
    return (a.limit.monthly_pico - max(a.fleet_spent, a.spent) - a.reserved < worst_case
            or (a.short_since > 0 and now - a.short_since >= EXHAUSTED_AFTER_S))


def _lease_error(kind: BudgetScopeKind, a: Allowance) -> ApiError:
    if a.expires_at == 0.0:
        return ApiError(503, f"the {kind} budget allowance for {a.period} has not been granted to this gateway "
                             "yet; retry in a second", "server_error", LEASE_PENDING)
    return ApiError(503, f"the {kind} budget allowance of this gateway expired (the control plane cannot be "
                         "reached); requests charged to it are refused until it is renewed", "server_error",
                    "budget_lease_expired")


CHECKOUT_FRACTION = 8  # a checkout chunk is 1/8 of the grant (at least one request): 8 disk writes a grant


@dataclass(frozen=True)
class SavedAllowance:
    """What a durable book writes to disk for one allowance (``tollway.durable``), and restores from."""

    scope: str
    period: str
    granted: int
    expires_at: float
    checked_out: int


class BudgetBook:
    def __init__(self, *, horizon_s: float = DEFAULT_HORIZON_S, on_shortfall: Callable[[], None] | None = None,
                 durable: bool = False) -> None:
        self.index = BudgetIndex("", {}, {})
        self.horizon_s = horizon_s  # the lease client sets it to the lease's ttl: a grant should last a lease
        self.on_shortfall = on_shortfall  # the lease client's wake-up: ask now rather than at the next tick
        self.on_checkout: Callable[[], None] | None = None  # the persister's wake-up
        self.durable = durable
        self.answers = 0  # lease answers applied: the persister writes after each
        self._allowances: dict[tuple[str, str], Allowance] = {}

    def prepare(self, snapshot: pb.Snapshot) -> Callable[[], None]:
        """The budgets of ``snapshot``, to adopt together with its runtime (``SnapshotHolder`` companions)."""
        index = BudgetIndex.of(snapshot)
        return lambda: self.set_index(index)

    def set_index(self, index: BudgetIndex) -> None:
        """Adopt the budgets of a new snapshot. Limits of existing allowances follow; grants stay."""
        self.index = index
        for a in list(self._allowances.values()):  # on the loop: the holder adopts snapshots there
            limit = index.limit_of(a.scope)
            if limit is not None:
                a.limit = limit

    def allowance(self, scope: str, period: str) -> Allowance | None:
        return self._allowances.get((scope, period))

    def allowances(self) -> list[Allowance]:
        return list(self._allowances.values())

    def _allowance(self, s: BudgetScope, period: str, now: float) -> Allowance:
        a = self._allowances.get((s.name, period))
        if a is None:
            a = self._allowances[(s.name, period)] = Allowance(s.name, s.kind, period, s.limit, window_start=now,
                                                               checked_out=0 if self.durable else -1)
        return a

    # --- durability: checkouts written before they are spent ---------------------------------------------------

    def plan_checkout(self, now: float) -> list[SavedAllowance] | None:
        """The state to write next (every allowance, with the chunks to add where a checkout runs low), or None
        when nothing is due. Adopt it with ``commit_checkout`` once it is on disk."""
        if not self.durable:
            return None
        due = False
        out: list[SavedAllowance] = []
        for a in self._allowances.values():
            chunk = max(a.granted // CHECKOUT_FRACTION, a.need, 1)
            target = a.checked_out
            if a.is_granted(now) and a.checked_out < a.granted and a.checked_out - a.spent - a.reserved < chunk:
                target = min(a.granted, max(a.checked_out, a.spent + a.reserved) + 2 * chunk)
                due = True
            out.append(SavedAllowance(a.scope, a.period, a.granted, a.expires_at, max(target, 0)))
        return out if due else None

    def saved(self) -> list[SavedAllowance]:
        """The state as it stands (what a forced write records)."""
        return [SavedAllowance(a.scope, a.period, a.granted, a.expires_at, max(a.checked_out, 0))
                for a in self._allowances.values()]

    def spent_so_far(self) -> list[SavedAllowance]:
        """What a clean stop records: checked out only what was spent or is still reserved, so the next process
        counts exactly that as spent rather than everything checked out (a deploy then costs no budget)."""
        return [SavedAllowance(a.scope, a.period, a.granted, a.expires_at,
                               max(0, min(a.checked_out, a.spent + a.reserved)))
                for a in self._allowances.values()]

    def commit_checkout(self, saved: list[SavedAllowance]) -> None:
        """``saved`` is on disk: what it checks out may now be spent."""
        for s in saved:
            a = self._allowances.get((s.scope, s.period))
            if a is not None:
                a.checked_out = max(a.checked_out, s.checked_out)

    def restore(self, saved: list[SavedAllowance], now: float) -> None:
        """Resume after a restart: grants as last answered, everything checked out counted as spent."""
        for s in saved:
            if s.period != period_of(now):
                continue
            scope = self.index.scope_named(s.scope)
            if scope is None:
                continue
            a = self._allowance(scope, s.period, now)
            a.granted, a.expires_at = s.granted, s.expires_at
            a.spent = max(a.spent, s.checked_out)  # it may all have been spent before the crash
            a.checked_out = max(a.checked_out, s.checked_out)

    def reserve(self, tenant: str, project: str, key_id: str, user: str, worst_case: int,
                now: float) -> Reservation | ApiError:
        """Hold ``worst_case`` micro-dollars in every scope the request is charged to, or refuse it whole."""
        scopes = self.index.scopes_for(tenant, project, key_id, user)
        if not scopes:
            return _NOTHING
        period = period_of(now)
        worst_case = max(0, worst_case)
        plan: list[tuple[Allowance, bool]] = []
        for s in scopes:
            a = self._allowance(s, period, now)
            if not a.limited:
                continue
            a.window += worst_case
            a.need = max(a.need, worst_case)
            if a.is_granted(now):
                if a.available(now) >= worst_case:
                    plan.append((a, False))
                    continue
                a.shortfall = max(a.shortfall, worst_case)
                if a.checked_out >= 0 and a.granted - a.spent - a.reserved >= worst_case:
                    # Granted but not yet checked out to disk: the persister writes the next chunk now.
                    if self.on_checkout is not None:
                        self.on_checkout()
                    return _rebalancing(s.kind, a)
                self._wake()
                if _is_exhausted(a, worst_case, now):
                    a.exceeded += 1
                    return _exceeded(s.kind, a, worst_case)
                return _rebalancing(s.kind, a)
            if a.safe_available() >= worst_case:
                plan.append((a, True))
                continue
            a.shortfall = max(a.shortfall, worst_case)
            self._wake()
            return _lease_error(s.kind, a)
        for a, safe in plan:
            if safe:
                a.safe_reserved += worst_case
            else:
                a.reserved += worst_case
        return Reservation(tuple(Hold(a, worst_case, safe) for a, safe in plan))

    def settle(self, reservation: Reservation, actual_pico: int) -> None:
        """The request cost ``actual_pico``: it is spent, the rest of the reservation is free again.

        A cost above the reservation (a bound that was not one) is still counted in full.
        """
        if reservation.done:
            return
        reservation.done = True
        actual = max(0, actual_pico)
        for h in reservation.holds:
            a = h.allowance
            if h.safe:
                a.safe_reserved -= h.amount
                a.safe_spent += actual
            else:
                a.reserved -= h.amount
                a.spent += actual

    def release(self, reservation: Reservation) -> None:
        """The request never reached an upstream: it cost nothing."""
        self.settle(reservation, 0)

    # --- what the lease client needs -------------------------------------------------------------------------

    def asks(self, now: float, *, may_give_back: bool = True) -> list[Ask]:
        """One ask per allowance worth talking about, plus the static scopes of the current period.

        ``may_give_back``: whether a grant far above demand is shrunk here and released. The lease client allows
        it only while the control plane answers: a release it never hears of would strand the grant on this data
        plane, unusable, for the rest of an outage (the ledger still counts it as held here)."""
        period = period_of(now)
        for s in self.index.static_scopes():
            self._allowance(s, period, now)
        out: list[Ask] = []
        for key, a in list(self._allowances.items()):
            if a.period != period:
                if a.reserved == 0 and (a.granted <= a.spent or not a.is_granted(now)):
                    del self._allowances[key]  # a past month with nothing held: forget it
                    continue
                a.granted = min(a.granted, a.spent + a.reserved)
                out.append(Ask(a.scope, a.period, a.spent, a.reserved, 0, True))
                continue
            if self.index.limit_of(a.scope) is None and a.reserved == 0 and a.safe_reserved == 0:
                del self._allowances[key]  # no longer budgeted: the next answer would say so anyway
                if a.granted > a.spent:
                    out.append(Ask(a.scope, a.period, a.spent, 0, 0, True))
                continue
            want = self._want(a, now)
            release = may_give_back and a.granted - a.spent - a.reserved > 3 * want
            if release:
                # Given back before asking: nothing reserved while the answer travels can use it.
                a.granted = a.spent + a.reserved + want
            out.append(Ask(a.scope, a.period, a.spent, a.reserved, want, release, a.need, a.exceeded))
        return out

    def _want(self, a: Allowance, now: float) -> int:
        # At least a lease interval: a burst in the first milliseconds of a scope is not a rate for a whole lease.
        elapsed = max(now - a.window_start, 1.0)
        decay = 0.5 ** (elapsed / _DEMAND_HALF_LIFE_S)
        # Up at once with a burst, down slowly after it: a grant must cover the next burst too.
        a.rate = max(a.window / elapsed, a.rate * decay)
        a.window, a.window_start = 0, now
        horizon = a.limit.lease_s or self.horizon_s  # a grant should last its lease
        want = max(int(a.rate * horizon), a.limit.monthly_pico // MIN_WANT_DIVISOR, 2 * a.shortfall, a.need)
        a.shortfall = 0
        return want

    def apply(self, scope: str, period: str, *, limited: bool, granted: int, remaining: int,
              expires_at: float, answered_at: float, fleet_spent: int = 0) -> None:
        """Adopt the control plane's answer for one allowance (``granted`` is absolute, not a delta)."""
        self.answers += 1
        a = self._allowances.get((scope, period))
        if a is None:
            return
        a.limited = limited
        a.granted = granted
        a.remaining = remaining
        a.fleet_spent = fleet_spent
        short = a.need > 0 and granted - a.spent - a.reserved < a.need and remaining < a.need
        a.short_since = (a.short_since or answered_at) if short else 0.0
        a.expires_at = expires_at

    def _wake(self) -> None:
        if self.on_shortfall is not None:
            self.on_shortfall()
