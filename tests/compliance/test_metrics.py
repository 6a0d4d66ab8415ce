"""Prometheus metrics: the registry's exposition format, the data plane's request metrics over a real socket,
and the control plane's /metrics on the admin port (public by default, token when configured)."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import openai
import pytest

from dataplane.api.app import create_app
from dataplane.core.accounting import Outcome, Usage
from dataplane.core.decide import RequestFacts, RoutePlan, decide
from dataplane.record.metrics import DataPlaneMetrics
from dataplane.settings import DataPlaneSettings
from dataplane.snapshot.holder import SnapshotHolder
from dataplane.snapshot.runtime import Runtime
from tests.compliance.helpers import cli_env, control_plane, run, write_yaml
from tests.core.policy_docs import model, provider, route, tenant
from tests.dataplane.snapshots import build_snapshot
from tests.dataplane.test_dataplane_http import serving
from tollway.prometheus import Registry

SECRET_PROMPT = "my card is 4111 1111 1111 1111, tell nobody"


def test_registry_renders_the_text_exposition_format() -> None:
    r = Registry()
    c = r.counter("t_requests_total", "Requests", ["route", "status"])
    c.labels("chat", "200").inc()
    c.labels("chat", "200").inc(2)
    c.labels('we"ird\\', "500").inc()
    h = r.histogram("t_seconds", "Latency", ["route"], buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.labels("chat").observe(v)
    g = r.gauge("t_age_seconds", "Age")
    g.labels().set(float("nan"))
    assert r.render().decode().splitlines() == [
        "# HELP t_requests_total Requests", "# TYPE t_requests_total counter",
        't_requests_total{route="chat",status="200"} 3',
        't_requests_total{route="we\\"ird\\\\",status="500"} 1',
        "# HELP t_seconds Latency", "# TYPE t_seconds histogram",
        't_seconds_bucket{route="chat",le="0.1"} 2', 't_seconds_bucket{route="chat",le="1"} 3',
        't_seconds_bucket{route="chat",le="+Inf"} 4', 't_seconds_sum{route="chat"} 3.65',
        't_seconds_count{route="chat"} 4',
        "# HELP t_age_seconds Age", "# TYPE t_age_seconds gauge", "t_age_seconds NaN",
    ]
    with pytest.raises(ValueError, match="registered twice"):
        r.counter("t_requests_total", "again")


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split(" ")[0] == name):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in:\n{text}")


async def test_data_plane_metrics_count_requests_tokens_cost_and_hold_no_prompt(tmp_path: Path) -> None:
    snap, keys = build_snapshot()
    holder = SnapshotHolder()
    assert holder.install(snap) is None
    snapshot_file = tmp_path / "snapshot.pb"
    snapshot_file.write_bytes(snap.SerializeToString())
    backlog = [17]
    metrics = DataPlaneMetrics(holder, "eu", backlog=lambda: backlog[0], snapshot_file=snapshot_file)
    app = create_app(DataPlaneSettings(port=0), holder, metrics=metrics)
    async with serving(app) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=keys.acme_all, max_retries=0)
        for _ in range(3):
            await client.chat.completions.create(model="mock", messages=[{"role": "user", "content": SECRET_PROMPT}])
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await resp.text()
    assert sample(text, 'tollway_requests_total{route="mock",status="200"}') == 3
    assert sample(text, 'tollway_request_duration_seconds_count{route="mock"}') == 3
    assert sample(text, 'tollway_upstream_duration_seconds_count{provider="mock-eu"}') == 3
    assert sample(text, 'tollway_tokens_total{route="mock",direction="output"}') > 0
    assert sample(text, 'tollway_cost_usd_total{route="mock"}') > 0
    assert sample(text, 'tollway_snapshot_info{region="eu",version="v-test-1"}') == 1
    assert 0 <= sample(text, "tollway_snapshot_age_seconds") < 60
    assert sample(text, "tollway_usage_backlog_records") == 17
    for secret in (SECRET_PROMPT, keys.acme_all, keys.acme_all[-8:]):
        assert secret not in text
    # Nor the prompt's card number in any name, label or help text (a sample's value is a number, which may
    # hold those digits by chance: 0.0485963821411...).
    described = "\n".join(line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in text.splitlines())
    assert "4111" not in described


def test_recording_a_request_costs_about_a_microsecond() -> None:
    snap, keys = build_snapshot()
    runtime = Runtime.from_snapshot(snap, {"TOLLWAY_TEST_UPSTREAM_KEY": "x"})
    body = b'{"model":"mock","messages":[{"role":"user","content":"hi"}]}'
    plan = decide(RequestFacts(runtime, f"Bearer {keys.acme_all}", body, time.time(), 0.5))
    assert isinstance(plan, RoutePlan)
    outcome = Outcome("r", "v", plan, plan.candidates[0], 1, 200, Usage(10, 5, 2), 123, time.time(), 0.01, 0.02)
    metrics = DataPlaneMetrics(SnapshotHolder(), "eu").requests
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        metrics.observe(outcome)
    per_call = (time.perf_counter() - start) / n
    print(f"{per_call * 1e6:.2f} µs per request")
    assert per_call < 5e-6, f"{per_call * 1e6:.2f} µs per request"  # generous: shared CI machines


async def test_control_plane_metrics_are_public_by_default(tmp_path: Path) -> None:
    async with control_plane(tmp_path) as (cp, _):
        env = cli_env(tmp_path, cp)
        docs = [provider("p", "eu", type_="mock"), model("m", "p"), route("chat", "m"), tenant("acme", "eu")]
        assert (await run(env, "apply", "-f", str(write_yaml(tmp_path / "p.yaml", *docs)))).returncode == 0
        async with aiohttp.ClientSession() as session:
            async with session.get(cp.admin_url + "/metrics") as resp:  # no token
                assert resp.status == 200
                text = await resp.text()
            async with session.get(cp.admin_url + "/admin/v1/compliance/report",
                                   headers={"Authorization": f"Bearer {cp.admin_token}"}) as resp:
                assert resp.content_type == "text/markdown"
            async with session.get(cp.admin_url + "/admin/v1/history") as resp:
                assert resp.status == 401  # only /metrics went public
    assert sample(text, "tollway_policy_commits_total") == 1
    assert sample(text, "tollway_policy_generation") == 1
    assert sample(text, "tollway_usage_batches_stored_total") == 0
    assert sample(text, "tollway_retention_runs_total") >= 0
    assert cp.admin_token not in text


async def test_control_plane_metrics_can_require_the_admin_token(tmp_path: Path) -> None:
    async with control_plane(tmp_path, metrics_require_token=True) as (cp, _), aiohttp.ClientSession() as session:
        async with session.get(cp.admin_url + "/metrics") as resp:
            assert resp.status == 401
        async with session.get(cp.admin_url + "/metrics",
                               headers={"Authorization": f"Bearer {cp.admin_token}"}) as resp:
            assert resp.status == 200
            assert "# TYPE tollway_dataplanes gauge" in await resp.text()


