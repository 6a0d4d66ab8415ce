"""``gatectl dataplane serve --workers 2``: two full data planes on one port, supervised by their parent.

Real processes as a user runs them: a control plane, the group, the openai SDK. Each worker is a data plane to the
control plane (its own node id), the group's ``/metrics`` sums both, a worker killed with SIGKILL is restarted,
and SIGTERM stops the whole group cleanly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import openai

from tests.cli.gatectl_process import base_env, gatectl, start_gatectl

POLICY = """
apiVersion: tollway.dev/v1
kind: Provider
metadata: {name: mock-eu}
spec: {type: mock, region: eu}
---
apiVersion: tollway.dev/v1
kind: Model
metadata: {name: small}
spec: {provider: mock-eu, upstreamModel: small, contextWindow: 8192, maxOutputTokens: 256,
       pricing: {inputPerMillion: "1", outputPerMillion: "2"}}
---
apiVersion: tollway.dev/v1
kind: Route
metadata: {name: chat}
spec: {models: [small]}
---
apiVersion: tollway.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {regions: [eu], budget: {monthlyUsd: "100"}}
"""


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def requests_total(metrics: str) -> float:
    return sum(float(m) for m in re.findall(r'^tollway_requests_total\{route="chat",status="200"\} (\S+)$',
                                            metrics, re.M))


def eventually(check: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_two_workers_share_one_port_are_two_data_planes_and_are_supervised(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cp = start_gatectl(tmp_path, "cp", "controlplane", "serve", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "cp"), env=env)
    group = None
    try:
        ready = cp.wait_for(r"admin API (http://\S+?), gRPC (\S+?),")
        admin = env | {"TOLLWAY_CONTROL_PLANE": ready.group(1),
                       "TOLLWAY_ADMIN_TOKEN": (tmp_path / "cp" / "admin-token").read_text().strip()}
        (tmp_path / "policy.yaml").write_text(POLICY)
        assert gatectl("apply", "-f", str(tmp_path / "policy.yaml"), env=admin).returncode == 0
        created = gatectl("keys", "create", "k", "--tenant", "acme", env=admin)
        secret = created.stdout.split("secret: ")[1].split()[0]

        token = (tmp_path / "cp" / "dataplane-token").read_text().strip()
        group = start_gatectl(tmp_path, "group", "dataplane", "serve", "--control-plane", ready.group(2),
                              "--region", "eu", "--port", "0", "--ops-port", "0", "--state-dir",
                              str(tmp_path / "dp"), "--node-id", "edge", "--workers", "2",
                              env=env | {"TOLLWAY_DATAPLANE_TOKEN": token})
        found = group.wait_for(r"2 workers on (http://\S+), group /metrics and /healthz on (http://\S+)")
        url, ops = found.group(1), found.group(2)
        eventually(lambda: get(ops + "/healthz")[0] == 200)

        client = openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=2)
        for i in range(40):
            with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=2) as fresh:  # new connections
                fresh.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"q{i}"}])
        client.close()

        metrics = get(ops + "/metrics")[1]
        assert requests_total(metrics) == 40  # the group's counters: both workers summed
        served = re.findall(r'^tollway_snapshot_info\{region="eu",version="\S+",worker="(\d)"\} 1$', metrics, re.M)
        assert sorted(served) == ["0", "1"]  # a gauge per worker
        planes = gatectl("dataplanes", "-o", "json", env=admin)
        nodes = sorted(p["nodeId"] for p in json.loads(planes.stdout)["items"])
        assert nodes == ["edge-w0", "edge-w1"]  # each worker is a data plane to the control plane

        workers = children(group.process.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)  # a worker dies: the supervisor starts it again
        eventually(lambda: 'tollway_worker_restarts_total{worker="0"} 1' in get(ops + "/metrics")[1]
                   or 'tollway_worker_restarts_total{worker="1"} 1' in get(ops + "/metrics")[1])
        eventually(lambda: get(ops + "/healthz")[0] == 200)
        with openai.OpenAI(base_url=url + "/v1", api_key=secret, max_retries=2) as again:
            again.chat.completions.create(model="chat", messages=[{"role": "user", "content": "after"}])

        group.process.send_signal(signal.SIGTERM)
        assert group.process.wait(40) == 0, group.stderr.read_text()
        assert "data plane group stopped" in group.stderr.read_text()
        assert all(not Path(f"/proc/{pid}").exists() for pid in children(group.process.pid))
    finally:
        if group is not None:
            group.interrupt()
        assert cp.interrupt() == 0, cp.stderr.read_text()


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (its parent was killed)."""
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    cp = start_gatectl(tmp_path, "cp", "controlplane", "serve", "--admin-port", "0", "--grpc-port", "0",
                       "--state-dir", str(tmp_path / "cp"), env=env)
    workers: list[int] = []
    try:
        ready = cp.wait_for(r"admin API (http://\S+?), gRPC (\S+?),")
        token = (tmp_path / "cp" / "dataplane-token").read_text().strip()
        group = start_gatectl(tmp_path, "group", "dataplane", "serve", "--control-plane", ready.group(2),
                              "--region", "eu", "--port", "0", "--ops-port", "0", "--state-dir",
                              str(tmp_path / "dp"), "--node-id", "edge", "--workers", "2",
                              env=env | {"TOLLWAY_DATAPLANE_TOKEN": token})
        ops = group.wait_for(r"2 workers on http://\S+, group /metrics and /healthz on (http://\S+)").group(1)
        # Both workers serve (the group's /healthz answers once one does): a worker still starting when its
        # supervisor dies has no signal handler yet, and SIGTERM ends it without its drain.
        eventually(lambda: "\ntollway_workers_up 2\n" in get(ops + "/metrics")[1])
        workers = children(group.process.pid)
        assert len(workers) == 2
        group.process.kill()  # SIGKILL: the supervisor stops nothing itself
        group.process.wait(10)
        eventually(lambda: all(gone(pid) for pid in workers), within=20)
        # They drained as on SIGTERM: each logged its clean stop.
        assert group.stderr.read_text().count("data plane stopped") == 2
    finally:
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        assert cp.interrupt() == 0, cp.stderr.read_text()


def test_a_group_whose_ports_are_taken_says_which_and_leaves_nothing_running(tmp_path: Path) -> None:
    import socket

    env = base_env(tmp_path) | {"TOLLWAY_DATAPLANE_TOKEN": "t"}
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        busy, port = taken.getsockname()[1], free.getsockname()[1]
        free.close()
        for flags, what in ((["--port", str(port), "--ops-port", str(busy)], "operator port (/metrics, /healthz)"),
                            (["--port", str(busy), "--ops-port", "0"], "port")):
            done = gatectl("dataplane", "serve", "--control-plane", "127.0.0.1:1", "--region", "eu", *flags,
                           "--state-dir", str(tmp_path / "dp"), "--node-id", "edge", "--workers", "2", env=env)
            assert done.returncode != 0
            assert f"the group's {what} 127.0.0.1:{busy}: address already in use" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        # No worker was left behind on the group's port: it binds again at once.
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
