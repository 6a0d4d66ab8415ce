"""The snapshot on the data plane's side: its runtime form, the holder that swaps it, its copy on disk.

- ``runtime``: ``Runtime.from_snapshot``, the pure build of frozen objects and dicts (keys by hash, routes,
  candidates per tenant) that every request reads in O(1); ``InvalidSnapshot`` names what is wrong.
  ``catalog``: providers, deployments, prices and routes as the runtime holds them; ``tenancy``: tenants and keys
  (both compiled with the request path); ``key_table``: a snapshot's keys, read in bulk and looked up by hash
  (``KeyTable``).
- ``holder``: ``SnapshotHolder``: ``prepare`` (any thread: the runtime and the companions' tables) then
  ``adopt`` (on the loop, one step), so a request never sees two versions.
- ``disk_cache``: the last good snapshot on disk, so a restart serves while the control plane is away.
"""
