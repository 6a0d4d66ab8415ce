"""Replaying recorded traffic through a proposed policy (``gatectl plan --replay``), with the data planes' own
decision core: what would be refused, what would move to another deployment, and what that costs per day.

- ``simulate``: one policy's replay of one request at a time (pure): ``decide_route``, then the data plane's
  admission (``LimitsGate``: token buckets along the recorded timestamps, budgets from the recorded spend).
- ``report``: both policies over a window of requests, and the report of what changes (pure).
- ``traffic``: the window's recorded requests (usage events and refusals), read from the usage store in chunks.

The one place the control plane runs data-plane code: the pure core (``dataplane.core``, ``dataplane.snapshot``),
so that replay and data plane cannot drift (``tests/core/test_layering.py`` allows exactly this).
"""
