"""The ``record`` step of the request path: usage record, metrics and request log, in that order.

``Records.served`` runs once per request that reached an upstream (after the gate settled it): the usage
record goes to the local spool (one ``os.write``, no fsync, so a crash loses no completed request), the metrics
are counted, the request log gets an entry (enqueued only; a writer thread does the rest), and a sampled
request's spans go to the tracer (``dataplane.record.tracing``: built here, exported by its thread). ``refused``
runs for requests the gateway answered itself. Nothing here blocks or waits for the control plane.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dataplane.core.accounting import Outcome
from dataplane.errors import ApiError
from dataplane.record.metrics import RequestMetrics
from dataplane.record.request_log import Refused, RequestLog, Served
from dataplane.record.usage_record import Spool, usage_record
from dataplane.snapshot.runtime import Key

if TYPE_CHECKING:
    from dataplane.record.trace_context import RequestTrace
    from dataplane.record.tracing import Tracer


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

    def keeps_content(self, key: Key, trace: RequestTrace | None = None) -> bool:
        """Whether the log keeps the content of this key's requests, or a sampled trace does (``full`` tenants
        only): only then is the response captured."""
        mode = key.tenant.content.mode
        return (self._log is not None and mode != "none") or (trace is not None and trace.sampled and mode == "full")

    def served(self, outcome: Outcome, response: Mapping[str, Any] | None = None,
               trace: RequestTrace | None = None) -> None:
        if self._spool is not None:
            self._spool.append(usage_record(outcome, self._region, self._node_id))
        self.metrics.observe(outcome)
        if self._log is not None:
            self._log.emit(Served(outcome, outcome.plan.key.tenant.content, response, outcome.upstream_s))
        if trace is not None and self.tracer is not None:
            self.tracer.served(outcome, trace, response)

    def refused(self, error: ApiError, request_id: str, started: float, snapshot: str, key: Key | None = None,
                model: str = "", trace: RequestTrace | None = None) -> None:
        self.metrics.refused(error)
        if self._log is not None:
            self._log.emit(Refused(request_id, started, time.time() - started, error, snapshot, key, model))
        if trace is not None and self.tracer is not None:
            self.tracer.refused(error, trace, request_id, started, snapshot, key, model)
