"""Several control-plane replicas on one store: who holds the singleton duties, and the state they share.

- ``election``: one replica at a time holds the duties (an etcd key under the replica's etcd lease); every
  write of a duty is fenced by that key's revision. On the embedded store there is one replica, which holds them.
- ``shared``: what each replica publishes for the others, under its lease or keyed by replica (presence, its data
  planes' registry records, its rate-limit demand board), and reads back from them.
- ``status``: ``GET /admin/v1/controlplane`` (``gatectl controlplane status``).
"""
