"""The usage stream's server end: store each batch a data plane reports, then acknowledge it.

``Report`` is a bidirectional stream. For every ``UsageBatch`` received, in order, the batch is stored in the
usage database (DuckDB, or the PostgreSQL replicas share; a batch stored before, by any replica, is a no-op)
and only then is a ``UsageAck`` for its sequence sent: an ack means "durably stored", and the data plane deletes
what is acknowledged. Acks are cumulative because a data plane sends its batches in sequence order from its ack
watermark.

Authentication: ``authorization: Bearer <data-plane token>`` in the call metadata, compared in constant time;
otherwise the call ends UNAUTHENTICATED before anything is read. This module is the one place where usage
outcomes become gRPC statuses: a malformed batch is INVALID_ARGUMENT, a database failure UNAVAILABLE (the data
plane retries from its spool).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from controlplane.grpc_auth import bearer, require_token
from controlplane.store.base import StoreError
from controlplane.usage.db import UsageDB, UsageDBError
from tollway.pb import usage_pb2 as upb
from tollway.pb import usage_pb2_grpc as ugrpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[upb.UsageBatch, upb.UsageAck]


class UsageServicer:
    """Serves ``Usage.Report``; one coroutine per connected data plane. Registers with ``add_to(server)``."""

    def __init__(self, db: UsageDB, token: str,
                 settle: Callable[[upb.UsageBatch], Awaitable[bool]] | None = None) -> None:
        """``settle``: moves a batch's costs into the budget ledger, idempotently (``LeaseServicer.settle_usage``)."""
        self._db = db
        self._settle = settle
        self._expected = bearer(token)

    def add_to(self, server: grpc.aio.Server) -> None:
        ugrpc.add_UsageServicer_to_server(self, server)

    async def Report(  # the name the generated code registers
        self, request_iterator: AsyncIterator[upb.UsageBatch], context: Context
    ) -> AsyncIterator[upb.UsageAck]:
        await require_token(context, self._expected)
        async for batch in request_iterator:
            if not batch.node_id or not batch.epoch or batch.sequence == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "a batch must carry node_id, epoch and a sequence above zero")
            try:
                # The ledger first: both steps are idempotent, and the ack waits for both.
                if self._settle is not None:
                    await self._settle(batch)
                stored = await self._db.store_batch(batch)
            except StoreError as e:
                log.error("cannot settle usage batch %s/%s/%d: %s", batch.node_id, batch.epoch, batch.sequence, e)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "budget ledger is unavailable; retry later")
            except UsageDBError as e:
                log.error("cannot store usage batch %s/%s/%d: %s", batch.node_id, batch.epoch, batch.sequence, e)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "usage storage is unavailable; retry later")
            if not stored:
                log.info("usage batch %s/%s/%d was stored before; acknowledging again",
                         batch.node_id, batch.epoch, batch.sequence)
            yield upb.UsageAck(node_id=batch.node_id, epoch=batch.epoch, sequence=batch.sequence)
