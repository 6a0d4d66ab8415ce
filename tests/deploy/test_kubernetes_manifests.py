"""The Kubernetes manifests of ``deploy/kubernetes``: valid against the Kubernetes schemas, wired together, free of
secrets, and their containers' command lines, probes and scrape annotations work against the real servers.

Schemas come from PyPI's ``kubernetes-validate`` (it ships them: no cluster, no network), in strict mode so a
misspelt field fails instead of being dropped by the API server.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.gatectl_process import ROOT, base_env, gatectl
from tests.conftest import EtcdProcess, free_port
from tests.deploy.recipes import (
    KUBERNETES,
    REGIONS,
    container_port,
    http_get,
    load_manifests,
    only_container,
    replace_option,
    start,
    venv_tool,
    wait_for_status,
)

PLACEHOLDER = "REPLACE-ME"


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool("kubernetes-validate"), "--strict", "--quiet", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_manifest_passes_strict_schema_validation() -> None:
    files = sorted(KUBERNETES.glob("*.yaml"))
    assert {f.name for f in files} >= {"controlplane.yaml", "secrets.yaml", *(f"dataplane-{r}.yaml" for r in REGIONS)}
    result = kubernetes_validate(*files)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(("old", "new"), [
    ("readinessProbe:", "readinesProbe:"),                  # a misspelt field
    ("minAvailable: 2", "minAvailable: [2]"),               # a wrong type
    ("replicas: 3", "replicas: three"),                     # not a number
])
def test_schema_validation_catches_a_broken_manifest(old: str, new: str, tmp_path: Path) -> None:
    text = (KUBERNETES / "dataplane-eu.yaml").read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "dataplane-eu.yaml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = kubernetes_validate(broken)
    assert result.returncode != 0 and "did not validate" in result.stdout + result.stderr


def test_the_region_files_differ_only_in_the_region() -> None:
    eu = (KUBERNETES / "dataplane-eu.yaml").read_text(encoding="utf-8")
    for region in REGIONS:
        text = (KUBERNETES / f"dataplane-{region}.yaml").read_text(encoding="utf-8")
        assert text == re.sub(r"\beu\b", region, eu), f"dataplane-{region}.yaml drifted from dataplane-eu.yaml"


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def scrape_target(deployment: dict[str, Any]) -> tuple[int, str]:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port = int(annotations["prometheus.io/port"])
    assert port in {int(p["containerPort"]) for p in only_container(deployment)["ports"]}
    return port, str(annotations.get("prometheus.io/path", "/metrics"))


@pytest.mark.parametrize("region", REGIONS)
def test_a_region_has_ready_checked_data_planes_a_budget_for_disruptions_and_a_service(region: str) -> None:
    manifests = load_manifests()
    name = f"tollway-dataplane-{region}"
    deployment = manifests[("Deployment", name)]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels_match(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    container = only_container(deployment)
    args = container["args"]
    assert args[:2] == ["dataplane", "serve"] and args[args.index("--region") + 1] == region
    serving = int(args[args.index("--port") + 1])
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], container_port(container, readiness["port"])) == ("/readyz", serving)
    assert (liveness["path"], container_port(container, liveness["port"])) == ("/healthz", serving)
    assert scrape_target(deployment) == (serving, "/metrics")

    budget = manifests[("PodDisruptionBudget", name)]["spec"]
    assert labels_match(budget["selector"]["matchLabels"], pod_labels)
    assert 0 < budget["minAvailable"] < deployment["spec"]["replicas"]
    service = manifests[("Service", name)]["spec"]
    assert labels_match(service["selector"], pod_labels)
    assert [container_port(container, p["targetPort"]) for p in service["ports"]] == [serving]

    [provider_secret] = [e["secretRef"]["name"] for e in container["envFrom"]]
    assert provider_secret == f"tollway-providers-{region}" and ("Secret", provider_secret) in manifests


def test_the_control_plane_runs_replicas_on_etcd_and_postgresql_and_is_scraped() -> None:
    manifests = load_manifests()
    deployment = manifests[("Deployment", "tollway-controlplane")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = only_container(deployment)
    args = container["args"]
    assert args[:2] == ["controlplane", "serve"]
    assert re.fullmatch(r"etcd://[^,\s]+:2379(,[^,\s]+:2379){2,}", args[args.index("--store") + 1])  # 3 members
    # Several replicas: a usage store they share (the password from a Secret, not the URL), a name each.
    usage = args[args.index("--usage-store") + 1]
    assert re.fullmatch(r"postgresql://\w+@[\w.-]+:5432/\w+", usage), usage
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "tollway-postgres", "key": "password"}
    assert args[args.index("--replica-id") + 1] == "$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert deployment["spec"]["replicas"] >= 3 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    budget = manifests[("PodDisruptionBudget", "tollway-controlplane")]["spec"]
    assert labels_match(budget["selector"]["matchLabels"], pod_labels)
    assert deployment["spec"]["replicas"] // 2 < budget["minAvailable"] < deployment["spec"]["replicas"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all("persistentVolumeClaim" not in v for v in volumes)  # a replica keeps nothing of its own

    admin, grpc_port = int(args[args.index("--admin-port") + 1]), int(args[args.index("--grpc-port") + 1])
    assert scrape_target(deployment) == (admin, "/metrics")
    assert container_port(container, container["readinessProbe"]["httpGet"]["port"]) == admin
    service = manifests[("Service", "tollway-controlplane")]["spec"]
    assert labels_match(service["selector"], pod_labels)
    assert {p["name"]: container_port(container, p["targetPort"]) for p in service["ports"]} == \
        {"admin": admin, "grpc": grpc_port}
    # The data planes' discovery address: a headless Service (one name, every ready replica's address).
    headless = manifests[("Service", "tollway-controlplane-grpc")]["spec"]
    assert headless["clusterIP"] == "None" and labels_match(headless["selector"], pod_labels)
    [port] = headless["ports"]
    assert port["port"] == container_port(container, port["targetPort"]) == grpc_port
    for region in REGIONS:
        env = {e["name"]: e for e in only_container(manifests[("Deployment", f"tollway-dataplane-{region}")])["env"]}
        assert env["TOLLWAY_DISCOVERY"]["value"] == f"tollway-controlplane-grpc.tollway.svc:{grpc_port}"


def test_secrets_hold_placeholders_only_and_every_reference_resolves() -> None:
    manifests = load_manifests()
    secrets = {name: doc for (kind, name), doc in manifests.items() if kind == "Secret"}
    for name, secret in secrets.items():
        assert "data" not in secret, f"{name}: use stringData placeholders, never encoded values"
        assert secret["stringData"] and set(secret["stringData"].values()) == {PLACEHOLDER}, name
    for (kind, name), doc in manifests.items():
        if kind != "Deployment":
            continue
        for env in only_container(doc).get("env") or []:
            if re.search(r"TOKEN|KEY|SECRET|PASSWORD", env["name"]):
                ref = env["valueFrom"]["secretKeyRef"]  # never a literal value in the manifest
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{name}: {ref}"
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_manifests_command_lines_probes_and_scrape_paths_work(tmp_path: Path, postgres_url: str) -> None:
    """The control plane's container args, run as two replicas (two pods), and the eu data plane's, as real
    processes with only the store, usage store, addresses and volumes swapped for this test's; the replicas name
    themselves after their pods and share the usage store; the probes and scrape paths the manifests name
    answer."""
    manifests = load_manifests()
    cp_deployment, dp_deployment = (manifests[("Deployment", "tollway-controlplane")],
                                    manifests[("Deployment", "tollway-dataplane-eu")])
    cp_container, dp_container = only_container(cp_deployment), only_container(dp_deployment)
    etcd = EtcdProcess(tmp_path)
    etcd.start()
    secrets = {"admin-token": "adm-" + "x" * 40, "dataplane-token": "dpt-" + "y" * 40, "password": "pg-" + "z" * 20}
    env = base_env(tmp_path)
    pods = ["tollway-controlplane-7d9f-a", "tollway-controlplane-7d9f-b"]
    cp_ports = [{7070: free_port(), 7071: free_port()} for _ in pods]
    dp_port = free_port()

    cps = []
    dp = None
    try:
        for pod, ports in zip(pods, cp_ports, strict=True):
            cp_args = replace_option(cp_container["args"], "--store", etcd.url)
            cp_args = replace_option(cp_args, "--usage-store", postgres_url)
            cp_args = replace_option(cp_args, "--state-dir", str(tmp_path / pod))
            for option in ("--admin-host", "--grpc-host"):
                cp_args = replace_option(cp_args, option, "127.0.0.1")
            for option in ("--admin-port", "--grpc-port"):
                cp_args = replace_option(cp_args, option, str(ports[int(cp_args[cp_args.index(option) + 1])]))
            cp_env = container_env(cp_container, secrets, {}, pod=pod)
            cps.append(start(tmp_path, pod, [venv_tool("gatectl"), *kubelet_expand(cp_args, cp_env)], env | cp_env))
        for ports in cp_ports:
            for probe in ("readinessProbe", "livenessProbe"):
                get = cp_container[probe]["httpGet"]
                wait_for_status(f"http://127.0.0.1:{ports[container_port(cp_container, get['port'])]}{get['path']}",
                                200)
        admin = env | {"TOLLWAY_CONTROL_PLANE": f"http://127.0.0.1:{cp_ports[0][7070]}",
                       "TOLLWAY_ADMIN_TOKEN": secrets["admin-token"]}
        applied = gatectl("apply", "-f", str(ROOT / "policies"), env=admin)
        assert applied.returncode == 0, applied.stderr

        # In the cluster TOLLWAY_DISCOVERY is one name for every replica; here, their loopback addresses.
        dp_args = replace_option(dp_container["args"], "--host", "127.0.0.1")
        dp_args = replace_option(dp_args, "--port", str(dp_port))
        dp_args = replace_option(dp_args, "--state-dir", str(tmp_path / "dp"))
        discovery = ",".join(f"127.0.0.1:{ports[7071]}" for ports in cp_ports)
        dp_env = container_env(dp_container, secrets, {"TOLLWAY_DISCOVERY": discovery})
        dp = start(tmp_path, "dp", [venv_tool("gatectl"), *dp_args], env | dp_env)
        ready = dp_container["readinessProbe"]["httpGet"]
        wait_for_status(f"http://127.0.0.1:{dp_port}{ready['path']}", 200)
        assert container_port(dp_container, ready["port"]) == 8080
        live = dp_container["livenessProbe"]["httpGet"]
        assert http_get(f"http://127.0.0.1:{dp_port}{live['path']}")[0] == 200

        # The replicas find each other through etcd, under their pods' names (each publishes itself every
        # ha_ttl / 3: the one asked may not have read the other's entry yet).
        deadline = time.monotonic() + 20
        while True:
            status = gatectl("controlplane", "status", "-o", "json", env=admin)
            assert status.returncode == 0, status.stderr
            answer = json.loads(status.stdout)
            found = sorted(r["replica"] for r in answer["replicas"]) == pods and answer["dutyHolder"] in pods
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert found, answer

        here = {7070: cp_ports[1][7070], 8080: dp_port}  # the manifests' ports, as this test bound them
        for deployment in (cp_deployment, dp_deployment):
            scraped, path = scrape_target(deployment)
            code, text = http_get(f"http://127.0.0.1:{here[scraped]}{path}")
            assert code == 200 and "# TYPE tollway_" in text
            assert not any(secret in text for secret in secrets.values())

        # Kubernetes stops a pod with SIGTERM and waits terminationGracePeriodSeconds: the data plane drains
        # within it and exits cleanly, and so does a replica (a rolling update).
        dp.process.send_signal(signal.SIGTERM)
        grace = dp_deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert dp.process.wait(grace) == 0, dp.stderr.read_text()
        cps[0].process.send_signal(signal.SIGTERM)
        assert cps[0].process.wait(cp_deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]) == 0
        logs = dp.stderr.read_text() + "".join(cp.stderr.read_text() for cp in cps)
        assert not any(secret in logs for secret in secrets.values())
    finally:
        try:
            if dp is not None:
                dp.interrupt()
            for cp in cps:
                assert cp.interrupt() == 0, cp.stderr.read_text()
        finally:
            etcd.stop()


def container_env(container: dict[str, Any], secrets: dict[str, str], overrides: dict[str, str],
                  pod: str = "") -> dict[str, str]:
    """The container's environment as the kubelet would set it, Secret keys resolved from ``secrets`` and the
    pod's name from ``pod`` (the provider Secrets of ``envFrom`` are left out: applying the policy needs no
    provider credential)."""
    out: dict[str, str] = {}
    for env in container.get("env") or []:
        if "value" in env:
            out[env["name"]] = str(env["value"])
        elif "fieldRef" in env["valueFrom"]:
            assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", env
            out[env["name"]] = pod
        else:
            out[env["name"]] = secrets[env["valueFrom"]["secretKeyRef"]["key"]]
    return out | overrides


def kubelet_expand(args: list[str], env: dict[str, str]) -> list[str]:
    """``$(NAME)`` in a container's args, as the kubelet expands it from the container's environment."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in args]
