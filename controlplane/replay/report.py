"""A replay of recorded traffic through the current and the proposed policy, and the report of what changes.

Pure: ``replay(rows, snapshots, spent, window)`` runs every recorded request, oldest first, through both policies
(``controlplane.replay.simulate``; one ``Replayer`` per policy and region), with the same seeded draw for
weighted routes in both, and returns the report as JSON-ready data:

- ``refused``: requests the current policy lets through and the proposed one refuses, by tenant, key and reason
  (``route not allowed``, ``residency``, ``rate limit``, ``budget``, ``key``; else the refusal's code);
- ``allowed``: the reverse (their cost is unknown when they were refused as recorded);
- ``moved``: requests served by another deployment, by tenant, from and to, with the cost that moves;
- ``cost``: what the window's requests cost under each policy, and the difference per day;
- ``reproduced``: how many requests the current policy's replay decides as they were recorded (the same
  deployment, or the same refusal): the check that replay and data plane share one decision.

Deterministic for a given window, policy pair and seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controlplane.replay.simulate import Decided, Facts, Recorded, Replayer
from tollway.budget_scopes import BudgetIndex
from tollway.money import usd
from tollway.pb import snapshot_pb2 as pb

Snapshots = Callable[[str], tuple[pb.Snapshot, pb.Snapshot]]  # region -> (current, proposed)
Spent = Callable[[BudgetIndex], Mapping[tuple[str, str], int]]
PROGRESS_EVERY = 10_000
_MISMATCH_SAMPLES = 10
DAY_MS = 86_400_000

_REASONS = {
    "model_not_allowed": "route not allowed", "model_not_found": "route not allowed",
    "region_not_allowed": "residency", "rate_limit_exceeded": "rate limit",
    "key_unknown": "key", "key_expired": "key",
}


def reason_of(code: str) -> str:
    """The reason a report shows for a refusal's code."""
    if code.endswith("_budget_exceeded"):
        return "budget"
    return _REASONS.get(code, code)


def signed_usd(pico: int) -> str:
    return ("-$" if pico < 0 else "+$") + usd(abs(pico))


def replay(rows: Iterable[Recorded], snapshots: Snapshots, spent: Spent, since_ms: int, until_ms: int,
           seed: int = 0, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replay ``rows`` (oldest first) through both policies; the report (see the module docstring)."""
    rng = random.Random(seed)
    draw = rng.random
    pairs: dict[str, tuple[Replayer, Replayer | None]] = {}
    shared = Facts()
    refused: dict[tuple[str, str, str, str], int] = defaultdict(int)
    allowed: dict[tuple[str, str, str], int] = defaultdict(int)
    moved: dict[tuple[str, str, str, str, str], list[int]] = {}
    samples: list[dict[str, Any]] = []
    total = matching = 0
    cost_current = cost_proposed = 0
    for row in rows:
        pair = pairs.get(row.region)
        if pair is None:
            pair = pairs[row.region] = _replayers(*snapshots(row.region), spent)
        pick = draw()
        facts = shared.of(row)
        before, failed = pair[0].decide(row, facts, pick)
        after = before if pair[1] is None else pair[1].decide(row, facts, pick, failed)[0]
        total += 1
        if _reproduces(before, row):
            matching += 1
        elif len(samples) < _MISMATCH_SAMPLES:
            samples.append({"key": row.key_id, "route": row.route, "recorded": row.deployment or row.refusal,
                            "replayed": before.deployment or before.refusal})
        cost_current += before.cost_pico
        cost_proposed += after.cost_pico
        if before.refusal != after.refusal or before.deployment != after.deployment:
            _tally(row, before, after, refused, allowed, moved)
        if progress is not None and total % PROGRESS_EVERY == 0:
            progress(total)
    if progress is not None:
        progress(total)
    days = max(until_ms - since_ms, 1) / DAY_MS
    return _report(total, matching, samples, refused, allowed, moved, cost_current, cost_proposed, days,
                   since_ms, until_ms, seed)


def _replayers(current: pb.Snapshot, proposed: pb.Snapshot, spent: Spent) -> tuple[Replayer, Replayer | None]:
    """The replayers of one region: the current policy's and the proposal's, or None for the proposal when its
    snapshot is the current one (same content hash): deterministic, its replay would decide the same."""
    cur = Replayer(current, spent(BudgetIndex.of(current)))
    same = current.version == proposed.version if current.version else current == proposed
    return cur, None if same else Replayer(proposed, spent(BudgetIndex.of(proposed)))


def _reproduces(decided: Decided, row: Recorded) -> bool:
    if row.refusal:
        return decided.refusal == row.refusal
    return not decided.refusal and (decided.deployment == row.deployment or not row.deployment)


def _tally(row: Recorded, before: Decided, after: Decided, refused: dict[tuple[str, str, str, str], int],
           allowed: dict[tuple[str, str, str], int], moved: dict[tuple[str, str, str, str, str], list[int]]) -> None:
    if after.refusal and not before.refusal:
        refused[(row.tenant, row.key_id, reason_of(after.refusal), after.refusal)] += 1
    elif before.refusal and not after.refusal:
        allowed[(row.tenant, row.key_id, reason_of(before.refusal))] += 1
    elif not before.refusal and not after.refusal:
        slot = moved.setdefault((row.tenant, before.deployment, after.deployment, before.provider, after.provider),
                                [0, 0])
        slot[0] += 1
        slot[1] += after.cost_pico - before.cost_pico


def _per_day(n: float, days: float) -> float:
    return round(n / days, 2)


def _report(total: int, matching: int, samples: list[dict[str, Any]],
            refused: Mapping[tuple[str, str, str, str], int], allowed: Mapping[tuple[str, str, str], int],
            moved: Mapping[tuple[str, str, str, str, str], list[int]], cost_current: int, cost_proposed: int,
            days: float, since_ms: int, until_ms: int, seed: int) -> dict[str, Any]:
    delta = cost_proposed - cost_current
    return {
        "window": {"sinceMs": since_ms, "untilMs": until_ms, "days": round(days, 4)},
        "seed": seed,
        "requests": total,
        "reproduced": {"requests": total, "matching": matching, "mismatches": samples},
        "changes": {"refused": sum(refused.values()), "allowed": sum(allowed.values()),
                    "moved": sum(n for n, _ in moved.values())},
        "refused": [{"tenant": t, "key": k, "reason": r, "code": c, "requests": n, "perDay": _per_day(n, days)}
                    for (t, k, r, c), n in sorted(refused.items(), key=lambda i: (-i[1], i[0]))],
        "allowed": [{"tenant": t, "key": k, "was": r, "requests": n, "perDay": _per_day(n, days)}
                    for (t, k, r), n in sorted(allowed.items(), key=lambda i: (-i[1], i[0]))],
        "moved": [{"tenant": t, "from": a, "to": b, "fromProvider": pa, "toProvider": pb_, "requests": n,
                   "perDay": _per_day(n, days), "costDeltaPico": c, "costDeltaPerDayUsd": signed_usd(int(c / days))}
                  for (t, a, b, pa, pb_), (n, c) in sorted(moved.items(), key=lambda i: (-i[1][0], i[0]))],
        "cost": {"currentPico": cost_current, "proposedPico": cost_proposed, "deltaPico": delta,
                 "deltaPerDayUsd": signed_usd(int(delta / days))},
    }
