"""Usage from the data planes: received, stored idempotently, reported, and deleted when past retention.

- ``service``: the gRPC usage stream's server end: store each batch, then acknowledge it.
- ``db``: the usage schema (docs/usage-schema.md, defined once) and usage events in DuckDB, idempotent by batch:
  the embedded default, for one machine.
- ``postgres``: the same in PostgreSQL, shared by several control-plane replicas; ``open`` picks one by URL.
- ``analytics``: the reports (daily cost, latency, errors, top users).
- ``retention``: deletes events older than each tenant's retention.
"""
