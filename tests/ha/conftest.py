"""Fixtures of the HA tests: ``cluster``, a real three-member etcd (``tests/ha/etcd_cluster.py``)."""

from tests.ha.etcd_cluster import cluster  # noqa: F401 (the fixture: see there)
