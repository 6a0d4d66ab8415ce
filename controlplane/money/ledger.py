"""The budget ledger: spend counters and grants in the store, with spent + outstanding grants <= limit.

One JSON document per (period, scope) (see ``controlplane.store.layout``): ``spent`` (settled, fleet-wide) and, per data
plane (node id), its current incarnation's cumulative ``granted`` and ``settled`` amounts and the grant's expiry.
A node's outstanding grant is ``granted - settled``; a grant that expired more than ``grace`` seconds ago is
reclaimed (its outstanding drops to zero) because the data plane stopped using it at expiry. When a node comes
back as a new process (new incarnation), what its old process still held becomes an ``orphan`` that settlements
from the node pay off first and that is reclaimed like an expired grant.

The pure transitions (``grant``, ``settle``, ``reclaim``) work on ``ScopeState``; ``Ledger`` reads documents,
applies a transition and writes them back in one transaction guarded by each document's mod_revision
(compare-and-swap), retrying when another writer got there first. Usage batches are settled exactly once: the
batch's (node, epoch, sequence) is recorded in the same transaction as the counters it moves.

Errors: ``StoreError`` from the store passes through (the caller retries); ``LedgerConflict`` when the
compare-and-swap lost too many times in a row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from controlplane.store.base import Compare, Store, StoreError
from controlplane.store.layout import budget_alert_key, budget_key, budget_settled_key
from tollway.budget_scopes import BudgetLimit
from tollway.money import PICO_PER_MICRO, micros_rounded, usd

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MAX_ATTEMPTS = 50
# etcd refuses a transaction of more than 128 operations by default: a batch touching more scope documents
# than this is settled in several transactions, each recorded in the batch marker.
MAX_DOCS_PER_TXN = 50


class LedgerConflict(StoreError):
    """Compare-and-swap kept losing to concurrent writers."""


@dataclass(slots=True)
class Holder:
    incarnation: str
    granted: int = 0
    settled: int = 0
    expires: float = 0.0
    orphan: int = 0
    orphan_expires: float = 0.0

    def outstanding(self) -> int:
        return max(0, self.granted - self.settled) + self.orphan


@dataclass(slots=True)
class ScopeState:
    spent: int = 0
    alerted: bool = False
    holders: dict[str, Holder] = field(default_factory=dict)
    # Nodes that asked for at least one request's worth and could not get it (node -> when): while one is
    # starving, the others keep only one request's worth above what they committed, so room flows to demand.
    starving: dict[str, float] = field(default_factory=dict)

    def outstanding(self) -> int:
        return sum(h.outstanding() for h in self.holders.values())

    def to_json(self) -> bytes:
        # The standard json module: amounts are pico-dollars, which may pass 64 bits (orjson's integers end there).
        return json.dumps({
            "unit": "pico", "spent": self.spent, "alerted": self.alerted,
            "holders": {n: [h.incarnation, h.granted, h.settled, h.expires, h.orphan, h.orphan_expires]
                        for n, h in sorted(self.holders.items())},
            "starving": self.starving,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> ScopeState:
        """A document, of this version or an older one (amounts in micro-dollars, no ``unit``: migrated)."""
        if not raw:
            return cls()
        d = json.loads(raw)
        scale = 1 if d.get("unit") == "pico" else PICO_PER_MICRO
        return cls(int(d["spent"]) * scale, bool(d.get("alerted", False)),
                   {n: Holder(str(v[0]), int(v[1]) * scale, int(v[2]) * scale, float(v[3]), int(v[4]) * scale,
                              float(v[5]))
                    for n, v in d["holders"].items()},
                   {str(n): float(t) for n, t in d.get("starving", {}).items()})


@dataclass(frozen=True, slots=True)
class AskIn:
    scope: str
    period: str
    spent: int      # settled by the asking process (>= what it reported)
    reserved: int
    want: int
    release: bool
    need: int = 0   # the smallest grant worth having (one worst-case request)


@dataclass(frozen=True, slots=True)
class Answer:
    scope: str
    period: str
    limited: bool
    granted: int
    remaining: int
    limit: int
    spent: int


def reclaim(state: ScopeState, now: float, grace: float) -> None:
    """Drop the outstanding part of grants (and orphans) that expired more than ``grace`` seconds ago."""
    for h in state.holders.values():
        if h.expires + grace < now and h.granted > h.settled:
            h.granted = h.settled
        if h.orphan and h.orphan_expires + grace < now:
            h.orphan = 0


def grant(state: ScopeState, node: str, incarnation: str, ask: AskIn, limit: int, now: float, ttl: float,
          grace: float) -> tuple[int, int]:
    """Apply one ask; returns (the node's absolute granted amount, what remains unallocated). Keeps the
    invariant: a grant only grows into ``limit - spent - outstanding``; a node may always shrink its own."""
    reclaim(state, now, grace)
    h = state.holders.get(node)
    if h is None or h.incarnation != incarnation:
        old = h
        h = state.holders[node] = Holder(incarnation)
        if old is not None and old.outstanding():
            h.orphan, h.orphan_expires = old.outstanding(), max(old.expires, old.orphan_expires)
    committed = max(ask.spent + ask.reserved, h.settled)
    if ask.release:
        h.granted = max(committed, min(h.granted, committed + ask.want))
    free = limit - state.spent - state.outstanding()
    if free < 0:
        # The limit went down below what is held: this node keeps only what it has committed.
        h.granted = max(h.settled, min(h.granted, committed))
        free = limit - state.spent - state.outstanding()
    target = committed + ask.want
    others_starving = any(n != node and t + ttl > now for n, t in state.starving.items())
    if others_starving and ask.need:
        # Yield what is not committed beyond one request: another data plane cannot serve even one.
        keep = committed + ask.need
        if h.granted > keep:
            free += h.granted - keep
            h.granted = keep
        target = min(target, keep)
    if target > h.granted and free > 0:
        active = sum(1 for n, o in state.holders.items() if n != node and o.expires > now and o.outstanding())
        # A fair share of what is free, but never less than one request of the asker (when that much is free):
        # a share smaller than a request serves nothing and strands the budget.
        fair = free if active == 0 else max(free // (active + 1), min(ask.need, free), 1)
        give = min(target - h.granted, fair)
        h.granted += give
        free -= give
    if ask.need and h.granted - committed < ask.need and not ask.release:
        state.starving[node] = now
    else:
        state.starving.pop(node, None)
    for n in [n for n, t in state.starving.items() if t + ttl <= now]:
        del state.starving[n]
    h.expires = now + ttl
    return h.granted, max(0, free)


def settle(state: ScopeState, node: str, cost: int, limit: BudgetLimit | None) -> bool:
    """Move ``cost`` from the node's grant to ``spent``; True when this crosses the soft threshold."""
    state.spent += cost
    h = state.holders.get(node)
    if h is not None:
        paid = min(h.orphan, cost)
        h.orphan -= paid
        h.settled += cost - paid
    if limit is None or state.alerted:
        return False
    if state.spent * 100 >= limit.monthly_pico * limit.soft_percent:
        state.alerted = True
        return True
    return False


@dataclass(slots=True)
class BatchMarker:
    """Which sequences of one (node, epoch) were settled: all up to ``through``, plus ``above``; ``parts``
    counts the transactions done of a batch settled in several."""

    through: int = 0
    above: list[int] = field(default_factory=list)
    parts: dict[int, int] = field(default_factory=dict)

    def is_settled(self, sequence: int) -> bool:
        return sequence <= self.through or sequence in self.above

    def mark(self, sequence: int) -> None:
        self.parts.pop(sequence, None)
        self.above = sorted(set(self.above) | {sequence})
        while self.above and self.above[0] <= self.through + 1:
            self.through = max(self.through, self.above.pop(0))

    def to_json(self) -> bytes:
        return orjson.dumps({"through": self.through, "above": self.above,
                             "parts": {str(k): v for k, v in self.parts.items()}})

    @classmethod
    def from_json(cls, raw: bytes | None) -> BatchMarker:
        if not raw:
            return cls()
        d = orjson.loads(raw)
        return cls(int(d["through"]), [int(x) for x in d["above"]], {int(k): int(v) for k, v in d["parts"].items()})


@dataclass(frozen=True, slots=True)
class Charge:
    """Cost of one usage record against one scope."""

    period: str
    scope: str
    limit: BudgetLimit | None
    cost: int


class Ledger:
    """The ledger on a store. Task-safe: every update is a compare-and-swap transaction."""

    def __init__(self, store: Store, *, ttl_s: float = 30.0, grace_s: float = 60.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.grace_s = grace_s

    async def state(self, period: str, scope: str) -> ScopeState:
        kv = await self.store.get(budget_key(period, scope))
        return ScopeState.from_json(kv.value if kv else None)

    async def lease(self, node: str, incarnation: str, asks: Sequence[tuple[AskIn, BudgetLimit | None]],
                    now: float) -> list[Answer]:
        """Apply a node's asks, all in one transaction (scopes without a budget are answered unlimited)."""
        limited = [(a, lim) for a, lim in asks if lim is not None]
        answers = {(a.scope, a.period): Answer(a.scope, a.period, False, 0, 0, 0, 0)
                   for a, lim in asks if lim is None}
        for chunk in _chunks(limited, MAX_DOCS_PER_TXN):
            for _ in range(MAX_ATTEMPTS):
                keys = [budget_key(a.period, a.scope) for a, _ in chunk]
                kvs = [await self.store.get(k) for k in keys]
                puts: list[tuple[str, bytes]] = []
                out: list[Answer] = []
                for (a, lim), key, kv in zip(chunk, keys, kvs, strict=True):
                    assert lim is not None
                    st = ScopeState.from_json(kv.value if kv else None)
                    granted, remaining = grant(st, node, incarnation, a, lim.monthly_pico, now, self.ttl_s,
                                               self.grace_s)
                    puts.append((key, st.to_json()))
                    out.append(Answer(a.scope, a.period, True, granted, remaining, lim.monthly_pico, st.spent))
                compares = [Compare(k, kv.mod_revision if kv else 0) for k, kv in zip(keys, kvs, strict=True)]
                if (await self.store.txn(compares, puts)).succeeded:
                    answers.update({(x.scope, x.period): x for x in out})
                    break
            else:
                raise LedgerConflict("budget lease: too many concurrent updates")
        return [answers[(a.scope, a.period)] for a, _ in asks]

    async def settle_batch(self, node: str, epoch: str, sequence: int, charges: Iterable[Charge]) -> bool:
        """Settle one usage batch's charges exactly once; False when it was settled before."""
        totals: dict[tuple[str, str], Charge] = {}
        for c in charges:
            prev = totals.get((c.period, c.scope))
            totals[(c.period, c.scope)] = Charge(c.period, c.scope, c.limit, c.cost + (prev.cost if prev else 0))
        parts = _chunks(sorted(totals.values(), key=lambda c: (c.period, c.scope)), MAX_DOCS_PER_TXN) or [[]]
        marker_key = budget_settled_key(node, epoch)
        for _ in range(MAX_ATTEMPTS * len(parts)):
            mkv = await self.store.get(marker_key)
            marker = BatchMarker.from_json(mkv.value if mkv else None)
            if marker.is_settled(sequence):
                return False
            done = marker.parts.get(sequence, 0)
            part = parts[done] if done < len(parts) else []
            if done + 1 >= len(parts):
                # The last part; or a replay whose charges now split into fewer parts (the policy changed between
                # a failed try and the replay): the parts already settled are all there is to settle.
                marker.mark(sequence)
            else:
                marker.parts[sequence] = done + 1
            compares = [Compare(marker_key, mkv.mod_revision if mkv else 0)]
            puts = [(marker_key, marker.to_json())]
            alerts: list[tuple[Charge, ScopeState]] = []
            for c in part:
                key = budget_key(c.period, c.scope)
                kv = await self.store.get(key)
                st = ScopeState.from_json(kv.value if kv else None)
                if settle(st, node, c.cost, c.limit):
                    alerts.append((c, st))
                    puts.append((budget_alert_key(c.period, c.scope), orjson.dumps({
                        "scope": c.scope, "period": c.period, "spent_micros": micros_rounded(st.spent),
                        "limit_micros": micros_rounded(c.limit.monthly_pico) if c.limit else 0,
                        "spent_usd": usd(st.spent), "limit_usd": usd(c.limit.monthly_pico) if c.limit else "0.00",
                        "soft_percent": c.limit.soft_percent if c.limit else 0})))
                compares.append(Compare(key, kv.mod_revision if kv else 0))
                puts.append((key, st.to_json()))
            if (await self.store.txn(compares, puts)).succeeded:
                for c, st in alerts:
                    assert c.limit is not None
                    log.warning("budget alert: %s spent %d of %d micro-USD in %s (soft threshold %d%%)", c.scope,
                                st.spent, c.limit.monthly_pico, c.period, c.limit.soft_percent)
                if done + 1 == len(parts):
                    return True
        raise LedgerConflict("budget settlement: too many concurrent updates")


def _chunks(items: Sequence[_T], size: int) -> list[list[_T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
