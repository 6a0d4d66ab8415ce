"""``--control-plane`` with several replicas: the gRPC target it becomes, and the message for a bad value (or for a
list over TLS without the name the certificates are checked against)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplane.sync.channel import control_plane_problem, grpc_target
from tests.cli.gatectl_process import base_env, gatectl


@pytest.mark.parametrize(("given", "target"), [
    ("cp1.example:7071", "cp1.example:7071"),  # one name: gRPC's resolver finds each of its addresses
    ("dns:///cp.example:7071", "dns:///cp.example:7071"),
    ("10.0.0.1:7071,10.0.0.2:7071", "ipv4:10.0.0.1:7071,10.0.0.2:7071"),
    ("[::1]:7071,10.0.0.2:7072", "ipv6:[::1]:7071,[::ffff:10.0.0.2]:7072"),
    ("localhost:7071,127.0.0.2:7072", "ipv4:127.0.0.1:7071,127.0.0.2:7072"),
    ("no-such-host.invalid:7071,10.0.0.2:7071", "ipv4:10.0.0.2:7071"),  # the others are still worth trying
])
def test_several_replicas_become_one_static_address_list(given: str, target: str) -> None:
    assert grpc_target(given) == target


@pytest.mark.parametrize(("given", "problem"), [
    ("cp1:7071", None), ("cp1:7071,cp2:7071", None), ("[::1]:7071,cp2:7071", None),
    ("cp1:7071,cp2", "has 'cp2' where HOST:PORT is expected"),
    ("cp1:7071,", "has '' where HOST:PORT is expected"),
    ("cp1:7071,cp2:99999", "has 'cp2:99999' where HOST:PORT is expected"),
])
def test_a_bad_list_is_named(given: str, problem: str | None) -> None:
    found = control_plane_problem(given)
    assert found == problem if problem is None else (found is not None and found.startswith(problem))


@pytest.mark.parametrize(("given", "server_name", "refused"), [
    ("cp1:7071", None, False),  # one name: the certificate is checked against it
    ("cp1:7071,cp2:7071", None, True),  # an address list has no name to check against
    ("cp1:7071,cp2:7071", "controlplane.example", False),
])
def test_several_replicas_over_tls_need_the_name_their_certificates_carry(
        given: str, server_name: str | None, refused: bool) -> None:
    problem = control_plane_problem(given, tls=True, server_name=server_name)
    assert (problem is not None and "--tls-server-name" in problem) if refused else problem is None
    assert control_plane_problem(given) is None  # in plain text, nothing is checked


def test_gatectl_names_the_option_and_the_bad_entry(tmp_path: Path) -> None:
    done = gatectl("dataplane", "serve", "--control-plane", "cp1:7071,cp2", "--region", "eu", env=base_env(tmp_path))
    assert done.returncode == 2
    assert "'--control-plane'" in done.stderr and "'cp2' where HOST:PORT is expected" in done.stderr


def test_gatectl_refuses_a_list_over_tls_without_a_server_name(tmp_path: Path) -> None:
    done = gatectl("dataplane", "serve", "--control-plane", "cp1:7071,cp2:7071", "--region", "eu", "--tls-ca",
                   str(tmp_path / "ca.pem"), env=base_env(tmp_path))
    assert done.returncode == 2
    assert "'--control-plane'" in done.stderr and "--tls-server-name" in done.stderr
