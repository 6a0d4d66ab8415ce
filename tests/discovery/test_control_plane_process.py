"""ControlPlane wiring: bound ports, tokens from state_dir, clean stop, and mTLS on the discovery port."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from controlplane.server import ControlPlane
from controlplane.settings import ControlPlaneSettings, resolve_tokens
from tests.discovery.conftest import DataPlaneFactory, base_policy, eventually, put


async def test_starts_on_free_ports_with_generated_tokens_and_stops_cleanly(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(state_dir=str(tmp_path / "cp"), admin_port=0, grpc_port=0)
    tasks_before = asyncio.all_tasks()
    cp = ControlPlane(settings)
    await cp.start()
    try:
        assert cp.admin_url.startswith("http://127.0.0.1:") and not cp.admin_url.endswith(":0")
        assert cp.grpc_target.startswith("127.0.0.1:") and not cp.grpc_target.endswith(":0")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{cp.admin_url}/admin/v1/snapshots",
                                   headers={"Authorization": f"Bearer {cp.admin_token}"}) as resp:
                assert resp.status == 200
            async with session.get(f"{cp.admin_url}/admin/v1/snapshots",
                                   headers={"Authorization": f"Bearer {cp.dataplane_token}"}) as resp:
                assert resp.status == 401  # the data-plane token is not an admin token
        assert (tmp_path / "cp" / "store").is_dir()  # the default store: embedded, under state_dir
    finally:
        await cp.stop()
    assert asyncio.all_tasks() == tasks_before

    # A restart reads the same tokens back from state_dir.
    again = resolve_tokens(settings)
    assert (again.admin, again.dataplane) == (cp.admin_token, cp.dataplane_token)
    assert len({again.admin, again.dataplane}) == 2 and len(again.admin) >= 43
    for name in ("admin-token", "dataplane-token"):
        assert stat.S_IMODE((tmp_path / "cp" / name).stat().st_mode) == 0o600


def test_configured_tokens_win_and_write_nothing(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(state_dir=str(tmp_path), admin_token="a" * 40, dataplane_token="d" * 40)

    tokens = resolve_tokens(settings)

    assert (tokens.admin, tokens.dataplane) == ("a" * 40, "d" * 40)
    assert list(tmp_path.iterdir()) == []


async def test_port_in_use_fails_start_and_leaves_nothing_running(tmp_path: Path) -> None:
    first = ControlPlane(ControlPlaneSettings(state_dir=str(tmp_path / "a"), admin_port=0, grpc_port=0))
    await first.start()
    try:
        admin_port = int(first.admin_url.rsplit(":", 1)[1])
        tasks_before = asyncio.all_tasks()
        second = ControlPlane(ControlPlaneSettings(state_dir=str(tmp_path / "b"), admin_port=admin_port, grpc_port=0))
        with pytest.raises(OSError):
            await second.start()
        assert asyncio.all_tasks() == tasks_before
    finally:
        await first.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=tollway-test-ca", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=d)
    return d


async def test_mtls_admits_data_planes_with_a_client_certificate_only(
    tmp_path: Path, certificates: Path, data_plane_factory: DataPlaneFactory
) -> None:
    pki = certificates
    cp = ControlPlane(ControlPlaneSettings(
        state_dir=str(tmp_path / "cp"), admin_port=0, grpc_port=0,
        tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"), tls_client_ca=str(pki / "ca.pem"),
    ))
    await cp.start()
    try:
        await put(cp.store, *base_policy())
        with_cert = await data_plane_factory(
            cp.grpc_target, node_id="with-cert", control_plane_token=cp.dataplane_token,
            tls_ca=str(pki / "ca.pem"), tls_cert=str(pki / "client.pem"), tls_key=str(pki / "client.key"),
        )
        without_cert = await data_plane_factory(
            cp.grpc_target, node_id="without-cert", control_plane_token=cp.dataplane_token, tls_ca=str(pki / "ca.pem"),
        )
        plaintext = await data_plane_factory(cp.grpc_target, node_id="plaintext",
                                             control_plane_token=cp.dataplane_token)

        await eventually(lambda: with_cert.is_ready, what="snapshot over mTLS")
        await eventually(lambda: without_cert.discovery.last_error != "" and plaintext.discovery.last_error != "",
                         what="refused connections")
        assert not without_cert.is_ready and not plaintext.is_ready
    finally:
        await cp.stop()
