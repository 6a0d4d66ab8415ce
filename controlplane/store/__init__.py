"""Policy storage: one contract, two backends, and where things live in it.

- ``base``: the contract (``Store``), modelled on etcd's: revisioned keys, guarded transactions, watches; its
  error tree (``StoreError`` → ``StoreUnavailable``, ``Compacted``).
- ``etcd``: the contract over etcd v3 (``aetcd``); translates the client's errors at that boundary.
- ``embedded``: the contract on one machine (memory + a crash-safe checkpoint file).
- ``open``: ``open_store(url)``, the one place that picks a backend.
- ``layout``: the key layout (resources, history, budgets) and how resources are read back.
"""
