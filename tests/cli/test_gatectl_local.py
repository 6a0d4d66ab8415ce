"""gatectl without a control plane: argument handling, local validation, config precedence, rendering.

Validation failures must name the file, the object and the field, exit 2, and send nothing: a real listening
socket stands in for the control plane and must see no connection at all.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.client import RawProblem, problem_from_source
from cli.commands.keys import parse_duration
from cli.config import resolve
from cli.errors import ExitCode, UsageError
from cli.main import app
from cli.render.output import dataplanes_table, resources_table

TENANT = """\
apiVersion: tollway.dev/v1
kind: Tenant
metadata: {name: acme}
spec:
  regions: [eu]
"""


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A real socket that accepts nothing; a command that sends anything leaves a connection in its backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    sock.close()


def assert_nothing_sent(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        conn, _ = sock.accept()
        conn.close()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_invalid_field_names_file_object_and_field(tmp_path: Path, listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    (tmp_path / "ok.yaml").write_text(TENANT.replace("acme", "initech"))
    bad = tmp_path / "team.yaml"
    bad.write_text(TENANT + "---\n" + TENANT.replace("acme", "globex").replace("regions: [eu]", "regions: []"))
    code, out, err = run("apply", "-f", str(tmp_path), "--control-plane", url)
    assert code == ExitCode.USAGE
    assert f"{bad}: document 2 (Tenant/globex): spec.regions: " in err
    assert "nothing was sent" in err
    assert "ok.yaml" not in err
    assert out == ""
    assert_nothing_sent(sock)


def test_invalid_yaml_names_file_and_line(tmp_path: Path, listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    bad = tmp_path / "broken.yml"
    bad.write_text(TENANT + "---\nkind: Route\nmetadata: {name: [\n")
    code, _, err = run("apply", "-f", str(bad), "--control-plane", url)
    assert code == ExitCode.USAGE
    assert f"{bad}: document 2: invalid YAML: line " in err
    assert "Traceback" not in err
    assert_nothing_sent(sock)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (TENANT.replace("kind: Tenant", "kind: Widget"), "(Widget/acme): kind: must be one of Tenant"),
        (TENANT.replace("name: acme", "name: Acme Corp"), "(Tenant/Acme Corp): metadata.name: 'Acme Corp' is not"),
        (TENANT + "  bogus: 1\n", "(Tenant/acme): spec.bogus: Extra inputs are not permitted"),
        (TENANT.replace("apiVersion: tollway.dev/v1\n", ""), "(Tenant/acme): apiVersion: Field required"),
        ("- just\n- a list\n", "document 1: a document must be a mapping, not list"),
        (TENANT + "---\n" + TENANT, "document 2 (Tenant/acme): metadata.name: duplicate: Tenant/acme is also"),
    ],
)
def test_each_local_problem_is_reported(
    tmp_path: Path, listener: tuple[str, socket.socket], document: str, expected: str
) -> None:
    url, sock = listener
    path = tmp_path / "p.yaml"
    path.write_text(document)
    code, _, err = run("diff", "-f", str(path), "--control-plane", url)
    assert code == ExitCode.USAGE
    assert f"{path}: " in err and expected in err
    assert_nothing_sent(sock)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    code, _, err = run("apply", "-f", str(tmp_path / "nope.yaml"))
    assert code == ExitCode.USAGE and "no such file or folder" in err
    code, _, err = run("apply", "-f", str(tmp_path))
    assert code == ExitCode.USAGE and "no *.yaml or *.yml files" in err


def test_unknown_kind_is_a_usage_error(listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    code, _, err = run("get", "widgets", "--control-plane", url)
    assert code == ExitCode.USAGE
    assert "unknown kind 'widgets'" in err and "tenants" in err
    assert_nothing_sent(sock)


def test_unreachable_control_plane_exits_4_with_one_line(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    (tmp_path / "t.yaml").write_text(TENANT)
    for args in (["get", "tenants"], ["apply", "-f", str(tmp_path)], ["history"], ["dataplanes"]):
        code, _, err = run(*args, "--control-plane", f"127.0.0.1:{port}")
        assert code == ExitCode.UNAVAILABLE, args
        assert err.strip().splitlines() == [f"error: cannot reach the control plane at http://127.0.0.1:{port}: "
                                            "connection refused"]


def test_bad_expires_in(listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    code, _, err = run("keys", "create", "k", "--tenant", "acme", "--expires-in", "soon", "--control-plane", url)
    assert code == ExitCode.USAGE and "--expires-in 'soon'" in err
    assert_nothing_sent(sock)


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("1d12h", 129600),
                                               ("90m", 5400), ("2w", 1209600), ("45s", 45)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0d", "d", "30", "3x", "1d 2h", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        ("http://flag:1", {"TOLLWAY_CONTROL_PLANE": "http://env:2"}, {"controlPlane": "http://file:3"},
         "http://flag:1"),
        (None, {"TOLLWAY_CONTROL_PLANE": "http://env:2"}, {"controlPlane": "http://file:3"}, "http://env:2"),
        (None, {}, {"controlPlane": "http://file:3/"}, "http://file:3"),
        (None, {}, {}, "http://127.0.0.1:7070"),
        ("cp.internal:7070", {}, {}, "http://cp.internal:7070"),
    ],
)
def test_control_plane_precedence(flag: str | None, env: dict[str, str], file: dict[str, str], expected: str) -> None:
    assert resolve(flag, None, env, file).control_plane == expected


def test_admin_token_precedence() -> None:
    file = {"adminToken": "from-file"}
    assert resolve(None, "from-flag", {"TOLLWAY_ADMIN_TOKEN": "from-env"}, file).admin_token == "from-flag"
    assert resolve(None, None, {"TOLLWAY_ADMIN_TOKEN": "from-env"}, file).admin_token == "from-env"
    assert resolve(None, None, {}, file).admin_token == "from-file"
    assert resolve(None, None, {}, {}).admin_token is None


def test_server_problem_maps_back_to_file_and_document() -> None:
    problem = problem_from_source(RawProblem("policies/routes.yaml#3", "Route", "chat", "spec.models[1]",
                                             "Model 'x' does not exist"))
    assert str(problem) == "policies/routes.yaml: document 3 (Route/chat): spec.models[1]: Model 'x' does not exist"


def test_key_table_shows_hint_not_hash_column() -> None:
    spec: dict[str, object] = {"tenant": "acme", "hint": "tw_...abcd", "hash": "sha256:" + "0" * 64, "routes": []}
    key = {"kind": "ApiKey", "metadata": {"name": "ci"}, "spec": spec}
    text = resources_table("ApiKey", [key])
    assert text.splitlines()[0].split() == ["NAME", "TENANT", "PROJECT", "HINT", "ROUTES", "EXPIRES", "STATUS"]
    assert "tw_...abcd" in text and "never" in text and text.splitlines()[1].split()[-1] == "active"
    revoked = {**key, "spec": {**spec, "revokedAt": 0}}
    assert resources_table("ApiKey", [revoked]).splitlines()[1].endswith("revoked 1970-01-01T00:00:00Z")
    rotating = {**key, "spec": {**spec, "previousSecrets": [{"hash": "x", "expiresAt": 4_102_444_800}]}}
    assert "rotating (old secret until 2100-01-01T00:00:00Z)" in resources_table("ApiKey", [rotating])


def test_dataplanes_table() -> None:
    rows = [{"nodeId": "n1", "region": "eu", "version": "abc", "status": "NACK", "error": "bad route",
             "lastSeen": 1000.0, "connected": True}]
    text = dataplanes_table(rows, now=1042.0)
    assert "NACK: bad route" in text and "42s" in text and "yes" in text


class _Answers(BaseHTTPRequestHandler):
    """A real HTTP server on loopback that answers every request with the status its path names."""

    def _answer(self) -> None:
        status = int(self.path.strip("/").split("/")[0])
        body = b"<html>oops</html>" if status == 502 else json.dumps(
            {"error": {"type": "conflict", "message": "the policy changed (generation 7)"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (409, ExitCode.REFUSED, "error: the policy changed (generation 7): the policy changed while this command ran"),
        (500, ExitCode.UNAVAILABLE, "error: the control plane failed (500): the policy changed (generation 7)"),
        (502, ExitCode.UNAVAILABLE, "error: the control plane failed (502): HTTP 502"),
    ],
)
def test_server_answers_become_exit_codes(tmp_path: Path, answers: str, status: int, code: int, message: str) -> None:
    (tmp_path / "t.yaml").write_text(TENANT)
    exit_code, out, err = run("apply", "-f", str(tmp_path), "--control-plane", f"{answers}/{status}")
    assert exit_code == code
    assert out == ""
    assert err.splitlines()[0].startswith(message)
