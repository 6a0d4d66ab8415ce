"""Staged rollouts, the shell: start one with an apply, promote or abort it, and decide automatically (``tick``).

The record (``controlplane.rollout.state.Rollout``) lives in the store at ``/tollway/rollout/current`` and is
written in the same transaction as the policy generation of each step, whose history entry (and so the audit
chain) carries the action: ``rollout-start`` (the apply itself, with its changes), ``rollout-promote`` (no change:
the fleet now runs the newest generation) and ``rollout-abort`` (the changes that restore the base generation,
keys included, without bringing back a revoked or rotated-out secret).

Who is sent what follows from the store alone: every replica's publisher watches the record with the resources
and takes each step's record and generation together (``controlplane.push.publisher``), turning the record into
the base policy with ``rollout_pin``. So a step taken through any replica reaches the data planes of every
replica within a watch's delay, and a restarted control plane resumes a rollout (and its deadline) from the
store before it serves anything; nothing here pins or unpins a publisher.

``tick`` is the singleton duty: the server runs it on the elected replica only (``run_while_held``). It would
be safe anywhere: every step is guarded by the record's ``mod_revision``, so two deciders cannot both act.
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
from controlplane.push.publisher import Publisher, RolloutPin
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


async def base_policy(repository: Repository, base: int) -> PolicySet:
    """The policy of generation ``base``, rebuilt from the current one and the history since."""
    state = await repository.state()
    target = engine.undo(await _entries_since(repository, state, base))
    resources: dict[tuple[str, str], dict[str, Any] | None] = {rid: s.canonical for rid, s in state.resources.items()}
    resources.update(target)
    return PolicySet.of(parse_resource(body) for body in resources.values() if body is not None)


def rollout_pin(repository: Repository) -> RolloutPin:
    """What the publisher calls with the record's bytes: (the base policy the others run, the canary)."""
    async def pin(record: bytes) -> tuple[PolicySet, Canary]:
        rollout = Rollout.from_json(orjson.loads(record))
        return await base_policy(repository, rollout.base), rollout.canary
    return pin


async def _entries_since(repository: Repository, state: PolicyState, base: int) -> list[dict[str, Any]]:
    return [await repository.history_entry(generation) for generation in range(state.generation, base, -1)]


class RolloutManager:
    """Task-safe on one event loop. ``window_s`` and ``min_requests`` shape the error-rate judgement; ``replica``
    (this control plane's replica id) is recorded with every step, so the history says which replica decided."""

    def __init__(self, repository: Repository, publisher: Publisher, registry: DataPlanes, usage_db: UsageDB | None, *,
                 replica: str = "", window_s: float = 300.0, min_requests: int = 20,
                 clock: Callable[[], float] = time.time) -> None:
        self._repository = repository
        self._store = repository.store
        self._publisher = publisher
        self._registry = registry
        self._usage = usage_db
        self._replica = replica
        self._window_s = window_s
        self._min_requests = min_requests
        self._clock = clock
        self._lock = asyncio.Lock()  # one step at a time in this process (the store guards across processes)

    async def current(self) -> tuple[Rollout, KeyValue] | None:
        kv = await self._store.get(ROLLOUT)
        return None if kv is None else (Rollout.from_json(orjson.loads(kv.value)), kv)

    async def start(self, documents: Iterable[Document], *, who: str, canary: Canary,
                    promote_after_s: int | None = None, abort_above: float | None = None,
                    expected_revision: int | None = None) -> tuple[ApplyResult, Rollout]:
        """Apply ``documents`` as a new generation that only ``canary`` runs; ``RolloutInProgress`` if one is
        active, ``InvalidPolicy`` if they are invalid, ``InvalidRequest`` if they change nothing or the canary
        names a region or data plane no connected data plane is."""
        async with self._lock:
            await self._repository.refuse_during_rollout()
            self._check_canary(canary)
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
                abort_above=abort_above, started_at=now)
            rollout = rollout.with_event(Event(rollout.started, "started", who))
            generation = await self._repository.commit(
                plan, who, "rollout-start", rollout=self._summary(rollout),
                also_put=[(ROLLOUT, orjson.dumps(rollout.to_json()))])
            log.info("rollout %s started by %s: generation %d on %s", rollout.id, who, generation, canary.describe())
            return ApplyResult(generation, True, plan.changes), rollout

    def _check_canary(self, canary: Canary) -> None:
        """Each region and data plane the canary names must be a connected data plane's: a typo would otherwise
        start a rollout that no data plane runs (and that a deadline would promote, untried)."""
        connected = [dp for dp in self._registry.dataplanes() if dp["connected"]]
        regions = sorted({dp["region"] for dp in connected})
        for region in canary.regions:
            if region not in regions:
                raise InvalidRequest(f"'canary': no connected data plane runs in region {region!r} (connected "
                                     f"regions: {', '.join(regions) or 'none'}); nothing was written")
        nodes = {dp["nodeId"] for dp in connected}
        for node in canary.dataplanes:
            if node not in nodes:
                raise InvalidRequest(f"'canary': no data plane {node!r} is connected (`gatectl dataplanes` lists "
                                     "them); nothing was written")

    def _summary(self, rollout: Rollout, **extra: Any) -> dict[str, Any]:
        summary = {**rollout.summary(), **extra}
        if self._replica:
            summary["replica"] = self._replica
        return summary

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
            entries = await _entries_since(self._repository, state, rollout.base)
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
        summary = self._summary(rollout, reason=reason, versions=event.to_json()["versions"])
        await self._repository.commit(plan, who, f"rollout-{action}", rollout=summary,
                                      rollout_guard=kv.mod_revision, also_delete=[ROLLOUT])
        log.info("rollout %s: %s by %s%s", rollout.id, event.action, who, f": {reason}" if reason else "")
        return done

    def _versions(self) -> dict[str, dict[str, str]]:
        """Per region, the version the canary and the others are sent (the same with no rollout)."""
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
        now = self._clock()
        since = max(now - self._window_s, rollout.started_at)
        return await health.traffic(self._usage, nodes | set(rollout.canary.dataplanes), since)

    async def tick(self) -> Verdict | None:
        """Promote or abort the rollout in the store if the verdict says so; returns what was done."""
        found = await self.current()
        if found is None:
            return None
        rollout, kv = found
        if self._publisher.rollout_revision != kv.mod_revision:
            return None  # this replica's publisher has not taken the record yet: its view of who runs what is old
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


def _traffic_json(t: Traffic) -> dict[str, Any]:
    return {"requests": t.requests, "errors": t.errors, "errorRate": t.error_rate, "p50LatencyMs": t.p50_ms}
