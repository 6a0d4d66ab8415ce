"""Usage from the data planes: received, stored idempotently, reported, and deleted when past retention.

- ``service``: the gRPC usage stream's server end: store each batch, then acknowledge it.
- ``db``: usage events in DuckDB (docs/usage-schema.md), idempotent by batch.
- ``analytics``: the reports (daily cost, latency, errors, top users).
- ``retention``: deletes events older than each tenant's retention.
"""
