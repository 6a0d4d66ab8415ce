"""Budgets across the fleet: the invariant spent + outstanding grants ≤ limit, kept in the store.

- ``ledger``: spend counters and grants per scope and period, changed only by compare-and-swap transactions.
- ``lease_service``: the gRPC service data planes ask for budget grants and rate-limit shares (it also passes their
  refusal counts to the alert duty).
- ``levels``: spend, limit and outstanding grants of tenant and project budgets, for the metrics.
"""
