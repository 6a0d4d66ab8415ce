"""The budget ledger: spend counters and grants in the store, with spent + outstanding grants <= limit.

One JSON document per (period, scope) (see ``controlplane.store.layout``): ``spent`` (settled, fleet-wide) and, per data
plane (node id), its current incarnation's cumulative ``granted`` and ``settled`` amounts and the grant's expiry.
A node's outstanding grant is ``granted - settled``; a grant that expired more than ``grace`` seconds ago is
reclaimed (its outstanding drops to zero) because the data plane stopped using it at expiry. When a node comes
back as a new process (new incarnation), what its old process still held becomes an ``orphan`` that settlements
from the node pay off first and that is reclaimed like an expired grant.

The pure transitions (``grant``, ``settle``, ``reclaim``) work on ``ScopeState``; ``Ledger`` reads documents,
applies a transition and writes them back in a transaction guarded by each document's mod_revision
(compare-and-swap), retrying when another writer got there first: a lease is one transaction per scope (all
concurrent; none when the scope's document would not change), a usage batch one for all the scopes it charges,
so it is settled exactly once: the batch's (node, epoch, sequence) is recorded in the same transaction as the
counters it moves.

After a batch settles, ``observe`` (the alert duty's ``budget_observed``) hears each budgeted scope's new spend;
the soft threshold's first crossing is also logged once.

Errors: ``StoreError`` from the store passes through (the caller retries); ``LedgerConflict`` when the
compare-and-swap lost too many times in a row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from controlplane.store.base import Compare, KeyValue, Store, StoreError
from controlplane.store.layout import budget_key, budget_settled_key
from tollway.budget_scopes import BudgetLimit
from tollway.money import PICO_PER_MICRO, usd

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
    # Given up at a yield but still counted as held until the node's next ask: requests it reserved while the
    # yielding answer travelled may spend it (the node learns its smaller grant only on arrival).
    yielded: int = 0

    def outstanding(self) -> int:
        return max(0, self.granted - self.settled) + self.orphan + self.yielded


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
            "holders": {n: [h.incarnation, h.granted, h.settled, h.expires, h.orphan, h.orphan_expires, h.yielded]
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
                              float(v[5]), int(v[6]) * scale if len(v) > 6 else 0)
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
    ttl: float = 0.0  # how long the grant lasts (its budget's lease; 0 for an unlimited scope)


def reclaim(state: ScopeState, now: float, grace: float) -> None:
    """Drop the outstanding part of grants (and orphans) that expired more than ``grace`` seconds ago."""
    for h in state.holders.values():
        if h.expires + grace < now and (h.granted > h.settled or h.yielded):
            h.granted = h.settled
            h.yielded = 0
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
    if h.yielded:
        # The node has heard of its smaller grant: what it reserved meanwhile is in ``committed``; the rest of
        # what it yielded is free now.
        h.granted = max(h.granted, min(committed, h.granted + h.yielded))
        h.yielded = 0
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
            h.yielded += h.granted - keep  # free once the node's next ask shows what it reserved meanwhile
            h.granted = keep
        target = min(target, keep)
    # Topped up only when less than half of what it wants is left unspent: a grant is not rewritten at every ask
    # as demand wobbles (each write races the usage settlements and other leases of the same document).
    if target > h.granted and free > 0 and (h.granted - committed) * 2 < ask.want + ask.need:
        active = sum(1 for n, o in state.holders.items() if n != node and o.expires > now and o.outstanding())
        # A fair share of what is free: half of it when nobody else holds a grant (a data plane that has not asked
        # yet finds room at its first ask), but never less than one request of the asker when that much is free:
        # a share smaller than a request serves nothing and strands the budget.
        fair = max(free // max(active + 1, 2), min(ask.need, free), 1)
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

    def __init__(self, store: Store, *, ttl_s: float = 30.0, grace_s: float = 60.0,
                 observe: Callable[[str, str, int, BudgetLimit, bool], None] | None = None) -> None:
        """``observe(period, scope, spent, limit, exceeded=False)``: called after a settlement, on the loop."""
        self.store = store
        self.ttl_s = ttl_s
        self.grace_s = grace_s
        self.observe = observe

    async def state(self, period: str, scope: str) -> ScopeState:
        kv = await self.store.get(budget_key(period, scope))
        return ScopeState.from_json(kv.value if kv else None)

    async def lease(self, node: str, incarnation: str, asks: Sequence[tuple[AskIn, BudgetLimit | None]],
                    now: float) -> list[Answer]:
        """Apply a node's asks (scopes without a budget are answered unlimited).

        The documents are read concurrently and the changed ones written in one compare-and-swap transaction per
        ``MAX_DOCS_PER_TXN`` (one store round trip, one disk sync); a transaction that loses a race retries its
        scopes one by one, so a conflict on a scope many data planes share (the tenant's) does not hold back
        every user's. A scope whose document would not change is not written at all.
        """
        answers: dict[tuple[str, str], Answer] = {
            (a.scope, a.period): Answer(a.scope, a.period, False, 0, 0, 0, 0) for a, lim in asks if lim is None}
        limited = [(a, lim) for a, lim in asks if lim is not None]

        async def chunk(part: list[tuple[AskIn, BudgetLimit]]) -> None:
            keys = [budget_key(a.period, a.scope) for a, _ in part]
            kvs = await asyncio.gather(*(self.store.get(k) for k in keys))
            planned = [self._plan(node, incarnation, a, lim, now, kv) for (a, lim), kv in zip(part, kvs, strict=True)]
            writes = [(key, kv, after) for key, kv, (_, after) in zip(keys, kvs, planned, strict=True)
                      if after is not None]
            if writes and not (await self.store.txn([Compare(k, kv.mod_revision if kv else 0) for k, kv, _ in writes],
                                                     [(k, after) for k, _, after in writes])).succeeded:
                retried = await asyncio.gather(*(self._lease_one(node, incarnation, a, lim, now) for a, lim in part))
                answers.update({(x.scope, x.period): x for x in retried})
                return
            answers.update({(x.scope, x.period): x for x, _ in planned})

        await asyncio.gather(*(chunk(part) for part in _chunks(limited, MAX_DOCS_PER_TXN)))
        return [answers[(a.scope, a.period)] for a, _ in asks]

    def _plan(self, node: str, incarnation: str, a: AskIn, lim: BudgetLimit, now: float,
              kv: KeyValue | None) -> tuple[Answer, bytes | None]:
        """The answer to one ask on the document as read, and the document to write (None: unchanged)."""
        ttl, limit = lim.lease_s or self.ttl_s, lim.monthly_pico
        before = kv.value if kv else None
        st = ScopeState.from_json(before)
        old = st.holders.get(node)
        renewed = old.expires if old is not None and old.incarnation == incarnation else 0.0
        granted, remaining = grant(st, node, incarnation, a, limit, now, ttl, self.grace_s)
        if renewed >= now + ttl - self.grace_s / 2:
            # Renewed moments ago: the ledger reclaims a grant only ``grace`` after its recorded expiry, which is
            # still past the expiry the data plane takes from this answer. Not writing it again keeps a steady
            # scope's document unchanged (no transaction) for ``grace / 2``.
            st.holders[node].expires = renewed
        after = st.to_json()
        return Answer(a.scope, a.period, True, granted, remaining, limit, st.spent, ttl), \
            (None if after == before else after)

    async def _lease_one(self, node: str, incarnation: str, a: AskIn, lim: BudgetLimit, now: float) -> Answer:
        key = budget_key(a.period, a.scope)
        for _ in range(MAX_ATTEMPTS):
            kv = await self.store.get(key)
            out, after = self._plan(node, incarnation, a, lim, now, kv)
            if after is None or (await self.store.txn([Compare(key, kv.mod_revision if kv else 0)],
                                                      [(key, after)])).succeeded:
                return out
        raise LedgerConflict("budget lease: too many concurrent updates")

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
            settled: list[tuple[Charge, ScopeState]] = []
            keys = [budget_key(c.period, c.scope) for c in part]
            # Read concurrently: the shorter the time between the reads and the transaction, the rarer a lease's
            # write to one of the documents makes it fail.
            kvs = await asyncio.gather(*(self.store.get(k) for k in keys))
            for c, key, kv in zip(part, keys, kvs, strict=True):
                st = ScopeState.from_json(kv.value if kv else None)
                if settle(st, node, c.cost, c.limit):
                    alerts.append((c, st))
                settled.append((c, st))
                compares.append(Compare(key, kv.mod_revision if kv else 0))
                puts.append((key, st.to_json()))
            if (await self.store.txn(compares, puts)).succeeded:
                for c, st in alerts:
                    assert c.limit is not None
                    log.warning("budget alert: %s spent $%s of $%s in %s (soft threshold %d%%)", c.scope,
                                usd(st.spent), usd(c.limit.monthly_pico), c.period, c.limit.soft_percent)
                if self.observe is not None:
                    for c, st in settled:
                        if c.limit is not None:
                            self.observe(c.period, c.scope, st.spent, c.limit, False)
                if done + 1 == len(parts):
                    return True
        raise LedgerConflict("budget settlement: too many concurrent updates")


def _chunks(items: Sequence[_T], size: int) -> list[list[_T]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]
