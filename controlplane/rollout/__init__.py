"""Staged rollouts: a new policy generation goes to a canary (regions or data planes) first, the rest of the fleet
keeps the previous one until it is promoted or aborted.

- ``state``: the rollout record (what the store keeps), the canary selector and the abort rule; pure.
- ``stable``: the policy the non-canary data planes run during a rollout (the base generation, with the keys'
  current secrets, so revocations and rotations reach everyone at once); pure.
- ``verdict``: the automatic decision (NACK, error rate, deadline) from observations; pure.
- ``health``: the canary's and the others' error rate and latency over a sliding window (usage in DuckDB).
- ``manager``: start, promote, abort, resume after a restart, and ``tick`` (the singleton duty that decides).
- ``api``: the admin API routes (``/admin/v1/rollout``).
"""
