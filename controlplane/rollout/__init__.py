"""Staged rollouts: a new policy generation goes to a canary (regions or data planes) first, the rest of the fleet
keeps the previous one until it is promoted or aborted.

- ``state``: the rollout record (what the store keeps), the canary selector and the abort rule; pure.
- ``stable``: the policy the non-canary data planes run during a rollout (the base generation, with the keys'
  current secrets, so revocations and rotations reach everyone at once); pure.
- ``verdict``: the automatic decision (NACK, error rate, deadline) from observations; pure.
- ``health``: the canary's and the others' error rate and latency over a sliding window (the usage store).
- ``manager``: start, promote, abort, ``tick`` (the singleton duty that decides), and ``rollout_pin``: what the
  publisher (``controlplane.push.publisher``, which watches the record with the policy) makes of the record.
- ``api``: the admin API routes (``/admin/v1/rollout``).
"""
