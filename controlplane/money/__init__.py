"""Budgets across the fleet: the invariant spent + outstanding grants ≤ limit, kept in the store.

- ``ledger``: spend counters and grants per scope and period, changed only by compare-and-swap transactions.
- ``lease_service``: the gRPC service data planes ask for budget grants and rate-limit shares.
"""
