"""Fixtures of the end-to-end leak test: real control and data planes (shared with tests/discovery)."""

from tests.discovery.conftest import data_plane_factory  # noqa: F401 (a fixture)
