"""The ``record`` step of the request path: usage record, metrics and request log, in that order.

``Records.served`` runs once per request that reached an upstream (after the gate settled it): the usage
record goes to the local spool (one ``os.write``, no fsync, so a crash loses no completed request), the metrics
are counted, the request log gets an entry (enqueued only; a writer thread does the rest), and a sampled
request's spans go to the tracer (``dataplane.record.tracing``: built here, exported by its thread). ``refused``
runs for requests the gateway answered itself; those refused by policy (a known key's validated request) are
spooled too, as decisions without an upstream, at most ``REFUSALS_PER_KEY_REASON_S`` per key and reason per
second (``RefusalSampler``). Nothing here blocks or waits for the control plane.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from dataplane.core.accounting import Outcome
from dataplane.core.attribution import Attribution
from dataplane.core.validate import HubRequest
from dataplane.errors import ApiError
from dataplane.record.metrics import RequestMetrics
from dataplane.record.request_log import Refused, RequestLog, Served
from dataplane.record.usage_record import Spool, refusal_record, usage_fields
from dataplane.snapshot.runtime import Key
from tollway.pb.usage_pb2 import UsageRecord

if TYPE_CHECKING:
    from dataplane.record.trace_context import RequestTrace
    from dataplane.record.tracing import Tracer


# Refusals spooled per (key, reason) per second; beyond it they are counted by the metrics only.
REFUSALS_PER_KEY_REASON_S = 20
_MAX_SAMPLED_SCOPES = 4096  # the sampler's memo is cleared whole when it holds this many (key, reason) pairs


class RefusalSampler:
    """Bounds what refused requests may write to the spool: a refused request costs the gateway no upstream, so
    a client (or an attacker holding a key) can send them as fast as the network allows; without a bound they
    would flood the spool and the usage store. At most ``per_s`` are admitted per (key id, reason) and wall-clock
    second, O(1) per call; the memo is bounded. Unauthenticated requests are never recorded (no key: nothing to
    replay, and the cheapest flood). Owned by one event loop."""

    __slots__ = ("_per_s", "_seen")

    def __init__(self, per_s: int = REFUSALS_PER_KEY_REASON_S) -> None:
        self._per_s = per_s
        self._seen: dict[tuple[str, str | None], list[int]] = {}  # (key id, reason) -> [second, count]

    def admits(self, key_id: str, reason: str | None, now: float) -> bool:
        second = int(now)
        slot = self._seen.get((key_id, reason))
        if slot is None:
            if len(self._seen) >= _MAX_SAMPLED_SCOPES:
                self._seen.clear()
            self._seen[(key_id, reason)] = [second, 1]
            return True
        if slot[0] != second:
            slot[0], slot[1] = second, 1
            return True
        slot[1] += 1
        return slot[1] <= self._per_s


@mypyc_attr(allow_interpreted_subclasses=True)  # (compiled, ``dataplane.compiled``): tests capture outcomes
class Records:
    """Task-safe on one event loop. ``spool`` and ``log`` are optional (tests, or a data plane without a log)."""

    def __init__(self, metrics: RequestMetrics, *, spool: Spool | None = None, log: RequestLog | None = None,
                 region: str = "", node_id: str = "", tracer: Tracer | None = None) -> None:
        self.metrics = metrics
        self.tracer = tracer  # None: tracing off
        self._spool = spool
        self._log = log
        self._region = region
        self._node_id = node_id
        self._sampler = RefusalSampler()

    def keeps_content(self, key: Key, trace: RequestTrace | None = None) -> bool:
        """Whether the log keeps the content of this key's requests, or a sampled trace does (``full`` tenants
        only): only then is the response captured."""
        mode = key.tenant.content.mode
        return (self._log is not None and mode != "none") or (trace is not None and trace.sampled and mode == "full")

    def served(self, outcome: Outcome, response: Mapping[str, Any] | None = None,
               trace: RequestTrace | None = None) -> None:
        fields = usage_fields(outcome, self._region, self._node_id) \
            if self._spool is not None or self._log is not None else None
        if self._spool is not None and fields is not None:
            self._spool.append(UsageRecord(**fields))
        self.metrics.observe(outcome)
        if self._log is not None:
            self._log.emit(Served(outcome, outcome.plan.key.tenant.content, response, outcome.upstream_s, fields))
        if trace is not None and trace.sampled and self.tracer is not None:
            # Its spans are built once the rest of this turn has written the answer (a whole answer is written
            # after this record): a sampled request's answer never waits for its own trace.
            asyncio.get_running_loop().call_soon(self.tracer.served, outcome, trace, response)

    def refused(self, error: ApiError, request_id: str, started: float, snapshot: str, key: Key | None = None,
                model: str = "", trace: RequestTrace | None = None, request: HubRequest | None = None,
                attribution: Attribution | None = None) -> None:
        """A request the gateway answered itself. With the caller's ``key`` and its validated ``request`` (a
        refusal by policy: route, residency, rate limit, budget), its decision is spooled too, sampled."""
        self.metrics.refused(error)
        if self._spool is not None and key is not None and request is not None \
                and self._sampler.admits(key.id, error.code, started):
            self._spool.append(refusal_record(error, request_id, started, snapshot, key, request, self._region,
                                              self._node_id, attribution))
        if self._log is not None:
            self._log.emit(Refused(request_id, started, time.time() - started, error, snapshot, key, model))
        if trace is not None and trace.sampled and self.tracer is not None:  # (after the answer, as ``served``)
            asyncio.get_running_loop().call_soon(self.tracer.refused, error, trace, request_id, started, snapshot,
                                                 key, model)
