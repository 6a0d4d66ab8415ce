"""The pure parts of a data-plane group: what each worker runs with, and the group's merged metrics."""

from __future__ import annotations

import pytest

from dataplane.main import SETTINGS_ENV, environment, settings_of
from dataplane.settings import DataPlaneSettings
from dataplane.workers import worker_settings
from tollway.prometheus import Registry, merge_expositions

pytestmark = pytest.mark.pure


def test_each_worker_is_its_own_data_plane_on_the_groups_port() -> None:
    base = DataPlaneSettings(port=0, node_id="edge", state_dir="/srv/tollway")
    w1 = worker_settings(base, 1, 8443)
    assert (w1.node_id, w1.state_dir, w1.port, w1.reuse_port) == ("edge-w1", "/srv/tollway/w1", 8443, True)
    assert w1.ops_socket == "/srv/tollway/w1/ops.sock"
    long = worker_settings(DataPlaneSettings(state_dir="/" + "d" * 120), 0, 1)
    assert len(long.ops_socket) < 100 and long.ops_socket.endswith(".sock")  # Unix socket paths end at 108


def test_a_data_plane_process_gets_exactly_the_settings_it_was_started_with() -> None:
    base = DataPlaneSettings(port=0, node_id="edge", state_dir="/srv/tollway", control_plane_token="dp-token",
                             cors_origins=frozenset({"https://a.example", "https://b.example"}),
                             trace_sampling=0.1, overload_lag_s=0.0)
    for settings in (base, worker_settings(base, 1, 8443)):
        env = environment(settings, {"PATH": "/bin"})
        assert env["PATH"] == "/bin"
        assert settings_of(env[SETTINGS_ENV]) == settings


def _registry(requests: int, in_flight: int) -> str:
    r = Registry()
    r.counter("tollway_requests_total", "Requests", ["route", "status"]).labels("chat", "200").value = requests
    r.gauge("tollway_requests_in_flight", "In flight").labels().set(in_flight)
    r.histogram("tollway_request_duration_seconds", "Latency", ["route"]).labels("chat").observe(0.02)
    return r.render().decode()


def test_the_group_sums_counters_and_histograms_and_keeps_gauges_per_worker() -> None:
    merged = merge_expositions([("0", _registry(30, 2)), ("1", _registry(12, 5))])
    lines = merged.splitlines()
    assert 'tollway_requests_total{route="chat",status="200"} 42' in lines
    assert 'tollway_requests_in_flight{worker="0"} 2' in lines and 'tollway_requests_in_flight{worker="1"} 5' in lines
    assert 'tollway_request_duration_seconds_count{route="chat"} 2' in lines
    assert 'tollway_request_duration_seconds_bucket{route="chat",le="0.025"} 2' in lines
    assert lines.count("# TYPE tollway_requests_total counter") == 1
