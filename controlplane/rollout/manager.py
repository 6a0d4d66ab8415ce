"""Staged rollouts, the shell: start one with an apply, promote or abort it, resume it after a restart, and
decide automatically (``tick``).

The record (``controlplane.rollout.state.Rollout``) lives in the store at ``/tollway/rollout/current`` and is
written in the same transaction as the policy generation of each step, whose history entry (and so the audit
chain) carries the action: ``rollout-start`` (the apply itself, with its changes), ``rollout-promote`` (no change:
the fleet now runs the newest generation) and ``rollout-abort`` (the changes that restore the base generation,
keys included, without bringing back a revoked or rotated-out secret).

The publisher serves the two revisions (``Publisher.pin``): the newest policy to the canary, the stable one to
everyone else. It is pinned *before* the rollout's generation is committed, and unpinned only *after* the promote
or abort is, so no data plane outside the canary ever sees the new generation early.

``tick`` is the singleton duty: it reads the record, brings this replica's publisher in step with it, and applies
the verdict (``controlplane.rollout.verdict``). The server runs it on the elected replica only; it would be safe
anywhere, since every step is guarded by the record's ``mod_revision``, so two deciders cannot both act.
``run`` (every replica) only follows the record (another replica may have started or ended the rollout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import orjson

from controlplane.errors import Conflict, InvalidPolicy, InvalidRequest, NotFound
from controlplane.policy import engine, key_lifecycle
from controlplane.policy.compile import PolicySet
from controlplane.policy.engine import ApplyPlan, Document, PolicyState
from controlplane.policy.repository import ApplyResult, Repository, utc_now
from controlplane.policy.resources import parse_resource
from controlplane.push.publisher import Publisher
from controlplane.rollout import health
from controlplane.rollout.state import Canary, Event, Rollout
from controlplane.rollout.verdict import CanaryNode, Traffic, Verdict, judge
from controlplane.store.base import KeyValue
from controlplane.store.layout import ROLLOUT
from controlplane.usage.db import UsageDB

log = logging.getLogger(__name__)

AUTOMATIC = "control-plane"


class DataPlanes(Protocol):
    """What the manager reads of the discovery registry (``controlplane.push.discovery.Registry``)."""

    def dataplanes(self) -> list[dict[str, Any]]: ...


class RolloutManager:
    """Task-safe on one event loop. ``window_s`` and ``min_requests`` shape the error-rate judgement."""

    def __init__(self, repository: Repository, publisher: Publisher, registry: DataPlanes, usage_db: UsageDB | None, *,
                 window_s: float = 300.0, min_requests: int = 20, tick_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._repository = repository
        self._store = repository.store
        self._publisher = publisher
        self._registry = registry
        self._usage = usage_db
        self._window_s = window_s
        self._min_requests = min_requests
        self._tick_s = tick_s
        self._clock = clock
        self._pinned: str | None = None  # the id of the rollout this replica's publisher serves
        self._lock = asyncio.Lock()  # one step at a time in this process (the store guards across processes)

    async def current(self) -> tuple[Rollout, KeyValue] | None:
        kv = await self._store.get(ROLLOUT)
        return None if kv is None else (Rollout.from_json(orjson.loads(kv.value)), kv)

    async def resume(self) -> None:
        """Pin the publisher to the rollout in the store, if any. Call before data planes can connect."""
        await self.follow()

    async def _sync(self, found: tuple[Rollout, KeyValue] | None) -> None:
        if found is None:
            if self._pinned is not None:
                await self._publisher.pin(None)
                self._pinned = None
            return
        rollout = found[0]
        if self._pinned != rollout.id:
            base = await self._base_policy(rollout)
            await self._publisher.pin(base, rollout.canary)
            self._pinned = rollout.id
            log.info("serving rollout %s: generation %d on %s, %d elsewhere", rollout.id, rollout.target,
                     rollout.canary.describe(), rollout.base)

    async def _base_policy(self, rollout: Rollout) -> PolicySet:
        """The policy of the rollout's base generation, rebuilt from the current one and the history since."""
        state = await self._repository.state()
        target = engine.undo(await self._entries_since(state, rollout.base))
        resources: dict[tuple[str, str], dict[str, Any] | None] = {
            rid: s.canonical for rid, s in state.resources.items()}
        resources.update(target)
        return PolicySet.of(parse_resource(body) for body in resources.values() if body is not None)

    async def _entries_since(self, state: PolicyState, base: int) -> list[dict[str, Any]]:
        entries = []
        for generation in range(state.generation, base, -1):
            entries.append(await self._repository.history_entry(generation))
        return entries

    async def start(self, documents: Iterable[Document], *, who: str, canary: Canary,
                    promote_after_s: int | None = None, abort_above: float | None = None,
                    expected_revision: int | None = None) -> tuple[ApplyResult, Rollout]:
        """Apply ``documents`` as a new generation that only ``canary`` runs; ``RolloutInProgress`` if one is
        active, ``InvalidPolicy`` if they are invalid, ``InvalidRequest`` if they change nothing."""
        async with self._lock:
            await self._repository.refuse_during_rollout()
            state = await self._repository.state()
            if expected_revision is not None and expected_revision != state.generation:
                raise Conflict(f"expected generation {expected_revision}, but the policy is at generation "
                               f"{state.generation}; nothing was written")
            plan = engine.plan_apply(state, documents)
            if plan.problems:
                raise InvalidPolicy(plan.problems)
            if plan.is_noop:
                raise InvalidRequest("the documents change nothing: there is nothing to roll out")
            now, target = self._clock(), state.generation + 1
            rollout = Rollout(
                id=f"rollout-{target}", who=who, started=utc_now(), base=state.generation, target=target,
                canary=canary, promote_at=None if promote_after_s is None else now + promote_after_s,
                abort_above=abort_above)
            rollout = rollout.with_event(Event(rollout.started, "started", who))
            await self._publisher.pin(state.policy, canary)  # before the commit: the others never see ``target``
            self._pinned = rollout.id
            try:
                generation = await self._repository.commit(
                    plan, who, "rollout-start", rollout=rollout.summary(),
                    also_put=[(ROLLOUT, orjson.dumps(rollout.to_json()))])
            except BaseException:
                await self._sync(await self.current())
                raise
            log.info("rollout %s started by %s: generation %d on %s", rollout.id, who, generation, canary.describe())
            return ApplyResult(generation, True, plan.changes), rollout

    async def promote(self, who: str, reason: str = "") -> Rollout:
        """Send the canary's generation everywhere; ``NotFound`` when no rollout is active."""
        async with self._lock:
            rollout, kv = await self._active()
            state = await self._repository.state()
            return await self._finish(rollout, kv, ApplyPlan(state), who, "promote", reason)

    async def abort(self, who: str, reason: str = "") -> Rollout:
        """Return the canary to the base generation (as a new generation); ``NotFound`` when none is active."""
        async with self._lock:
            rollout, kv = await self._active()
            state = await self._repository.state()
            entries = await self._entries_since(state, rollout.base)
            retired = key_lifecycle.retired_secrets(entries, state)
            target, _ = key_lifecycle.split_rollback(state, engine.undo(entries), retired, True)
            plan = engine.plan_restore(state, target, f"abort of {rollout.id}")
            return await self._finish(rollout, kv, plan, who, "abort", reason)

    async def _active(self) -> tuple[Rollout, KeyValue]:
        found = await self.current()
        if found is None:
            raise NotFound("no rollout is in progress")
        return found

    async def _finish(self, rollout: Rollout, kv: KeyValue, plan: ApplyPlan, who: str,
                      action: Literal["promote", "abort"], reason: str) -> Rollout:
        event = Event(utc_now(), f"{action}d" if action.endswith("e") else f"{action}ed", who, reason,
                      self._versions())
        done = rollout.with_event(event)
        summary = {**rollout.summary(), "reason": reason, "versions": event.to_json()["versions"]}
        await self._repository.commit(plan, who, f"rollout-{action}", rollout=summary,
                                      rollout_guard=kv.mod_revision, also_delete=[ROLLOUT])
        await self._sync(None)  # only after the commit: until then the others keep the base generation
        log.info("rollout %s: %s by %s%s", rollout.id, event.action, who, f": {reason}" if reason else "")
        return done

    def _versions(self) -> dict[str, dict[str, str]]:
        return {region: {"canary": self._publisher.version(region), "others": self._publisher.stable_version(region)
                         or self._publisher.version(region)}
                for region in self._publisher.regions()}

    async def status(self) -> dict[str, Any]:
        """What ``gatectl rollout status`` shows: the record, per region and data plane the version it should
        run and the one it runs, ACK/NACK, and the canary's traffic against the others'."""
        found = await self.current()
        rollout = found[0] if found is not None else None
        canary = rollout.canary if rollout is not None else Canary()
        dataplanes = []
        for dp in self._registry.dataplanes():
            dataplanes.append({
                "nodeId": dp["nodeId"], "region": dp["region"], "canary": canary.includes(dp["region"], dp["nodeId"]),
                "targetVersion": self._publisher.version_for(dp["region"], dp["nodeId"]),
                "runningVersion": dp["version"], "status": dp["status"], "error": dp["error"],
                "connected": dp["connected"],
            })
        body: dict[str, Any] = {
            "rollout": rollout.to_json() if rollout is not None else None,
            "regions": [{"region": r, "canaryVersion": v["canary"], "othersVersion": v["others"]}
                        for r, v in self._versions().items()],
            "dataplanes": dataplanes,
        }
        if rollout is not None:
            mine, others = await self._traffic(rollout)
            added_latency = (mine.p50_ms - others.p50_ms) if mine.p50_ms is not None and others.p50_ms is not None \
                else None
            body["traffic"] = {
                "windowSeconds": self._window_s, "canary": _traffic_json(mine), "others": _traffic_json(others),
                "addedErrorRate": mine.error_rate - others.error_rate, "addedLatencyMs": added_latency,
            }
        return body

    async def _traffic(self, rollout: Rollout) -> tuple[Traffic, Traffic]:
        if self._usage is None:
            return Traffic(), Traffic()
        nodes = {dp["nodeId"] for dp in self._registry.dataplanes()
                 if rollout.canary.includes(dp["region"], dp["nodeId"])}
        return await health.traffic(self._usage, nodes | set(rollout.canary.dataplanes), self._clock(), self._window_s)

    async def tick(self) -> Verdict | None:
        """Follow the store's record, then promote or abort if the verdict says so; returns what was done."""
        found = await self.follow()
        if found is None:
            return None
        rollout = found[0]
        nodes = [CanaryNode(dp["nodeId"], dp["status"], dp["error"]) for dp in self._registry.dataplanes()
                 if rollout.canary.includes(dp["region"], dp["nodeId"]) and dp["connected"]
                 and dp["version"] != self._publisher.version_for(dp["region"], dp["nodeId"])]
        mine, others = await self._traffic(rollout)
        verdict = judge(rollout, nodes, mine, others, self._clock(), self._min_requests)
        if verdict is None:
            return None
        try:
            if verdict.action == "abort":
                await self.abort(AUTOMATIC, verdict.reason)
            else:
                await self.promote(AUTOMATIC, verdict.reason)
        except (Conflict, NotFound) as exc:  # a human (or another replica) acted first
            log.info("rollout %s: automatic %s skipped: %s", rollout.id, verdict.action, exc)
            return None
        return verdict

    async def follow(self) -> tuple[Rollout, KeyValue] | None:
        """Bring this replica's publisher in step with the store's record (every replica, not only the one
        that decides: another may have started, promoted or aborted the rollout); returns the record.

        Under the lock: while this process starts a rollout, the publisher is pinned before the record is
        committed, and reading "no record" in between must not unpin it."""
        async with self._lock:
            found = await self.current()
            await self._sync(found)
            return found

    async def run(self) -> None:
        """``follow`` every ``tick_s`` until cancelled."""
        while True:
            try:
                await self.follow()
            except Exception:  # top of a long-running loop: log and go on
                log.exception("following the rollout record failed")
            await asyncio.sleep(self._tick_s)


def _traffic_json(t: Traffic) -> dict[str, Any]:
    return {"requests": t.requests, "errors": t.errors, "errorRate": t.error_rate, "p50LatencyMs": t.p50_ms}
