"""Fixtures of the gatectl tests that also run data planes in process."""

from tests.discovery.conftest import data_plane_factory  # noqa: F401 (a fixture: test_gatectl_replay.py)
