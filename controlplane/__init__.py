"""The control plane: keeps policy, compiles it into per-region snapshots, pushes them, keeps the money and usage.

Read this first. A policy change, from ``gatectl apply`` to a data plane's ACK, step → module:

1. **admin API**: ``admin.api`` receives the documents (``POST /admin/v1/apply``) and hands them to
2. **the policy engine**: ``policy.resources`` parses and validates each document (pydantic); ``policy.engine``
   plans the change purely (what is created, changed, unchanged, deleted; references checked and the result
   compiled by ``policy.compile.build_snapshots``, the one way the compiler is called) and returns problems as
   values; ``policy.repository`` writes it in one guarded transaction on the store's revision, with its
   history entry and its audit seal (``policy.audit``).
3. **the store**: ``store.base`` is the contract (etcd's), ``store.etcd`` and ``store.embedded`` its backends,
   ``store.open`` picks one, ``store.layout`` says where things live.
4. **publish**: ``push.publisher`` lists and watches the store, and compiles each region's snapshot off the loop
   (debounced; content-hashed versions, so an unchanged region keeps its version).
5. **push**: ``push.discovery`` streams a region's latest snapshot to each of its data planes (xDS-style
   state of the world: coalescing, ACK/NACK), and keeps the registry of data planes and their health
   (``push.fleet_health``) that ``gatectl dataplanes`` and ``gatectl providers`` show.

Alongside: **money**: ``money.ledger`` (spent + outstanding grants ≤ limit, by compare-and-swap) and
``money.lease_service`` (grants and rate shares for data planes); **alerts**: ``alerts.duty`` records budget
and rate-limit alert events (``alerts.rules`` decides, purely) and delivers them to webhooks (``alerts.webhooks``);
**usage**: ``usage.service`` receives usage
batches, ``usage.db`` keeps them in DuckDB (``usage.postgres``: in PostgreSQL), ``usage.analytics`` reports,
``usage.retention`` deletes what is past each tenant's retention; **admin**: the HTTP API, usage and analytics
endpoints, the dashboard
(``admin.dashboard``, ``admin.dashboard_page``, ``admin.charts``) and ``admin.metrics``; ``policy.compliance``
writes the compliance report. ``server.ControlPlane`` wires it all once; ``settings`` is read once; ``errors``
is the error tree; ``grpc_auth`` the one data-plane token check of the gRPC services.
"""
