"""What admits a planned request before any upstream is tried, and settles it after.

- ``limits_gate``: the gate (``LimitsGate``) over the two below, reserving ``dataplane.core.cost_bound``'s worst case;
- ``ratelimit``: token buckets at this data plane's share of each declared limit (``reset_text``: how OpenAI writes
  the reset durations);
- ``budget``: reservations from the grants the control plane leases.
"""
