"""TLS with several replicas: ``--control-plane cp1,cp2 --tls-ca ... --tls-server-name NAME``, real processes.

Each replica has a certificate of its own, signed by one CA, that carries its own name and the name the replicas
share (``controlplane.test``); the data plane checks every replica's certificate against that name. SIGKILL the
replica it streams from: its snapshot stream, its lease exchange and its usage all go on over TLS with the other
(``dataplane.sync.channel``). A name the certificates do not carry is refused by the TLS handshake.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.harness.fleet import Server, base_env, free_port, gatectl_args
from bench.outage import KEY, REGION, ROUTE, TENANT, policy
from controlplane.money.ledger import Ledger
from controlplane.store.etcd import EtcdStore
from dataplane.settings import DataPlaneSettings
from dataplane.sync.channel import control_plane_channel
from tests.conftest import EtcdProcess
from tollway.budget_scopes import period_of

SHARED_NAME = "controlplane.test"
TOKENS = {"TOLLWAY_ADMIN_TOKEN": "admin-token-for-tls-tests", "TOLLWAY_DATAPLANE_TOKEN": "dp-token-for-tls-tests"}
LEASE_TTL = 60


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(directory: Path, replicas: list[str]) -> Path:
    """A CA and, per replica, a server certificate for ``<replica>.test`` and the shared name."""
    directory.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=tollway-test-ca", cwd=directory)
    for name in replicas:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}.test", cwd=directory)
        (directory / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}.test,DNS:{SHARED_NAME}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=directory)
    return directory


def _admin(url: str, path: str) -> Any:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKENS['TOLLWAY_ADMIN_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _chat(dp_url: str, secret: str) -> int:
    body = json.dumps({"model": ROUTE, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8})
    request = urllib.request.Request(f"{dp_url}/v1/chat/completions", data=body.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


async def _until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if await asyncio.to_thread(check):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s} s")
        await asyncio.sleep(0.1)


def _streams_from(admin_url: str) -> list[str]:
    status = _admin(admin_url, "/admin/v1/controlplane")
    return list(next(r for r in status["replicas"] if r["replica"] == status["replica"])["dataplanes"])


async def _is_ready(target: str, ca: Path, server_name: str) -> bool:
    settings = DataPlaneSettings(control_plane=target, tls_ca=str(ca), tls_server_name=server_name)
    async with control_plane_channel(settings) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), 3)
            return True
        except TimeoutError:
            return False


async def test_a_data_plane_fails_over_between_replicas_over_tls(
        etcd_process: EtcdProcess, postgres_url: str, tmp_path: Path) -> None:
    names = ["cp1", "cp2"]
    pki = _pki(tmp_path / "pki", names)
    env = base_env(tmp_path) | TOKENS
    ports = [(free_port(), free_port()) for _ in names]
    cps = [Server(name, gatectl_args(
        "controlplane", "serve", "--store", etcd_process.url, "--admin-port", str(admin), "--grpc-port", str(grpc_port),
        "--replica-id", name, "--usage-store", postgres_url, "--ha-ttl", "2", "--lease-ttl", str(LEASE_TTL),
        "--tls-cert", str(pki / f"{name}.pem"), "--tls-key", str(pki / f"{name}.key"),
        "--state-dir", str(tmp_path / name)), tmp_path, env)
        for name, (admin, grpc_port) in zip(names, ports, strict=True)]
    admins = [f"http://127.0.0.1:{admin}" for admin, _ in ports]
    targets = ",".join(f"127.0.0.1:{grpc_port}" for _, grpc_port in ports)
    dp_port = free_port()
    dp = Server("dp-tls", gatectl_args(
        "dataplane", "serve", "--control-plane", targets, "--tls-ca", str(pki / "ca.pem"),
        "--tls-server-name", SHARED_NAME, "--region", REGION, "--port", str(dp_port), "--node-id", "dp-tls",
        "--workers", "1", "--state-dir", str(tmp_path / "dp")), tmp_path, env)
    dp_url = f"http://127.0.0.1:{dp_port}"
    try:
        for cp in cps:
            cp.start()
        for cp in cps:
            await cp.wait_log(r"control plane ready")
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump_all(policy("10"), sort_keys=False))

        def gatectl(admin: str, *args: str) -> str:
            done = subprocess.run(gatectl_args(*args), env=env | {"TOLLWAY_CONTROL_PLANE": admin},
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        gatectl(admins[1], "apply", "-f", str(path))
        secret = gatectl(admins[1], "keys", "create", KEY, "--tenant", TENANT, "--quiet").strip()
        dp.start()
        await _until(lambda: _streams_from(admins[0]) == ["dp-tls"], 30, "the data plane streams from cp1 over TLS")
        await _until(lambda: _chat(dp_url, secret) == 200, 10, "a request is served (a grant over TLS)")

        await cps[0].stop(signal.SIGKILL)
        killed = time.time()
        await _until(lambda: _streams_from(admins[1]) == ["dp-tls"], 10, "the data plane streams from cp2 over TLS")
        assert await asyncio.to_thread(_chat, dp_url, secret) == 200

        # Its grant is renewed by cp2 (the only replica alive) and its usage reaches cp2: both channels moved too.
        store = await EtcdStore.connect(etcd_process.url)
        try:
            async def renewed_after_the_kill() -> bool:
                state = await Ledger(store).state(period_of(time.time()), f"tenant/{TENANT}")
                holder = state.holders.get("dp-tls")
                return holder is not None and holder.expires > killed + LEASE_TTL - 5

            deadline = time.monotonic() + 15
            while not await renewed_after_the_kill():
                assert time.monotonic() < deadline, "the grant was not renewed through cp2 within 15 s"
                await asyncio.sleep(0.2)
        finally:
            await store.close()

        def usage_reached_cp2() -> bool:
            rows = json.loads(gatectl(admins[1], "usage", "--by", "tenant", "--tenant", TENANT, "-o", "json"))["rows"]
            return sum(int(r["requests"]) for r in rows) == 2

        await _until(usage_reached_cp2, 15, "both requests' usage, the second shipped to cp2")

        # The name is really checked: cp2's certificate does not carry another one.
        cp2_target = f"127.0.0.1:{ports[1][1]}"
        assert await _is_ready(cp2_target, pki / "ca.pem", SHARED_NAME)
        assert not await _is_ready(cp2_target, pki / "ca.pem", "cp1.test")
    finally:
        for server in [dp, *cps]:
            if server.is_running():
                await server.stop(signal.SIGTERM)
    assert not any(t in (tmp_path / f"{s.name}.err").read_text() for s in [dp, *cps] for t in TOKENS.values())
