"""``gatectl up``: a whole gateway on one machine, in one process, working without internet.

It runs a control plane on the embedded store under ``--state-dir``, applies the example policy (every Provider
rewritten to the built-in ``mock`` type unless ``--real-providers``), creates a demo key once (kept 0600 in the
state dir and reused on restart while the store still holds its hash), starts one data plane, waits until that
data plane runs the policy, and only then prints the lines a user pastes into a shell. Ctrl-C stops it all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.client import AdminClient
from cli.commands.run.serve import configure_logging, run_main, start_all, stop_all
from cli.documents import LoadedDocument, load_documents
from cli.errors import Refused, StartupFailed, UsageError, exit_on_error
from cli.stand_ins import as_stand_in
from controlplane.settings import ControlPlaneSettings
from dataplane.settings import DataPlaneSettings
from tollway.tasks import wait_for_signal

DEMO_KEY_NAME = "gatectl-up-demo"
DEMO_KEY_FILE = "demo-key"
READY_TIMEOUT_SECONDS = 20.0
# Fields that only make sense for a real upstream; a mock provider must not carry them.
REAL_PROVIDER_FIELDS = ("baseUrl", "credential", "apiVersion", "awsRegion", "awsProfile", "gcpProject", "gcpLocation")

log = logging.getLogger("gatectl")


def find_policy_dir() -> Path:
    """The repository's ``policies/`` next to the installed package, else ``./policies``."""
    for candidate in (Path(__file__).resolve().parents[2] / "policies", Path.cwd() / "policies"):
        if candidate.is_dir():
            return candidate
    raise UsageError("no policies/ folder found next to the package or in the current folder; pass --policy")


def rewrite_to_mock(documents: list[LoadedDocument]) -> list[LoadedDocument]:
    """Every Provider becomes ``type: mock`` (same name and region), so routes and residency stay as written; its
    label ``tollway.dev/gatectl-up`` keeps the type written, so ``apply`` can refuse to swap it back unasked."""
    out = []
    for doc in documents:
        if doc.kind != "Provider":
            out.append(doc)
            continue
        spec = {k: v for k, v in dict(doc.document.get("spec") or {}).items() if k not in REAL_PROVIDER_FIELDS}
        spec["type"] = "mock"
        out.append(replace(doc, document=as_stand_in(doc.document, spec)))
    return out


def choose_tenant(documents: list[LoadedDocument], region: str) -> str:
    """A tenant allowed in ``region``, preferring one that may use every route (so the demo key can too)."""
    tenants = sorted((d for d in documents if d.kind == "Tenant"), key=lambda d: d.name)
    in_region = [t for t in tenants if region in (t.document.get("spec") or {}).get("regions", [])]
    unrestricted = [t for t in in_region if not (t.document.get("spec") or {}).get("routes")]
    for group in (unrestricted, in_region):
        if group:
            return group[0].name
    raise UsageError(f"no Tenant in the policy allows region {region!r}; pass --region or --tenant")


def ensure_demo_key(client: AdminClient, state_dir: Path, tenant: str, who: str) -> str:
    """The demo key's secret: the stored one if the control plane still knows it, else a new one (saved 0600)."""
    path = state_dir / DEMO_KEY_FILE
    secret = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    existing = _demo_key_resource(client)
    if secret and existing is not None:
        expected = "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()
        if (existing.get("spec") or {}).get("hash") == expected:
            return secret
    if existing is not None:
        client.delete("ApiKey", DEMO_KEY_NAME, who)
    answer = client.create_key(DEMO_KEY_NAME, tenant, None, [], None, who)
    secret = str(answer["secret"])
    state_dir.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{DEMO_KEY_FILE}.tmp")
    aside.unlink(missing_ok=True)
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    os.replace(aside, path)
    return secret


def _demo_key_resource(client: AdminClient) -> dict[str, Any] | None:
    try:
        items = client.get_resources("ApiKey", DEMO_KEY_NAME).get("items") or []
    except Refused as exc:
        if exc.status == 404:
            return None
        raise
    return items[0] if items and isinstance(items[0], dict) else None


def probe_models(base_url: str, secret: str) -> str | None:
    """One ``GET /v1/models`` with the demo key, as a client would: None when it answers 200, else why not."""
    request = urllib.request.Request(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


async def wait_until_ready(base_url: str, secret: str, within_seconds: float) -> str | None:
    """Until the data plane accepts the demo key, which proves it runs a snapshot holding the applied policy
    and the key (not merely one kept on disk from an earlier run); returns None when ready, else why not."""
    deadline = time.monotonic() + within_seconds
    problem: str | None = "not tried"
    while time.monotonic() < deadline:
        problem = await asyncio.to_thread(probe_models, base_url, secret)
        if problem is None:
            return None
        await asyncio.sleep(0.1)
    return problem


def up(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The data plane's (OpenAI API) port")]
    = 8080,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    state_dir: Annotated[str, typer.Option("--state-dir", help="Store, tokens, demo key, data-plane state")]
    = ".tollway",
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Policy folder or file [default: the repository's policies/]", show_default=False)]
    = None,
    real_providers: Annotated[bool, typer.Option(
        "--real-providers", help="Keep the providers as written (needs their credentials and internet)")] = False,
    region: Annotated[str, typer.Option("--region", help="The data plane's region")] = "eu",
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant of the demo key", show_default=False)]
    = None,
    admin_port: Annotated[int, typer.Option("--admin-port", min=0, max=65535)] = 7070,
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=0, max=65535)] = 7071,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Data-plane worker processes on the port (see `gatectl dataplane serve`)")] = 1,
) -> None:
    """Run a control plane, one data plane and the example policy in one process (Ctrl-C stops it)."""
    with exit_on_error():
        documents = load_documents([policy] if policy else [str(find_policy_dir())])
        if not real_providers:
            documents = rewrite_to_mock(documents)
        demo_tenant = tenant or choose_tenant(documents, region)
    state = Path(state_dir)
    cp_settings = ControlPlaneSettings(state_dir=str(state / "controlplane"), admin_port=admin_port,
                                       grpc_port=grpc_port, admin_host=host, grpc_host=host)
    configure_logging()

    async def main() -> None:
        from controlplane.server import ControlPlane
        from dataplane.serve import DataPlane

        cp = ControlPlane(cp_settings)
        started = await start_all([("control plane", cp)])
        try:
            client = AdminClient(cp.admin_url, cp.admin_token)
            await asyncio.to_thread(client.apply, [d.to_request() for d in documents], False, "gatectl-up")
            secret = await asyncio.to_thread(ensure_demo_key, client, state, demo_tenant, "gatectl-up")
            dp_settings = DataPlaneSettings(
                host=host, port=port, region=region, control_plane=cp.grpc_target,
                control_plane_token=cp.dataplane_token, state_dir=str(state / "dataplane"),
                request_log=str(state / "dataplane" / "requests.log"),
            )
            if workers > 1:
                from dataplane.workers import Supervisor

                group = Supervisor(dp_settings, workers, ops_host=host, ops_port=0)
                started += await start_all([("data-plane group", group)])
                url = f"http://{host}:{group.port}"
                log.info("%d data-plane workers; their group's /metrics and /healthz on %s", workers, group.ops_url)
            else:
                dp = DataPlane(dp_settings)
                started += await start_all([("data plane", dp)])
                url = dp.url
            problem = await wait_until_ready(url.rstrip("/"), secret, READY_TIMEOUT_SECONDS)
            if problem is not None:
                raise StartupFailed(f"the data plane did not become ready: {problem}")
            mode = "real providers" if real_providers else "mock providers"
            for line in (
                f"OPENAI_BASE_URL={url.rstrip('/')}/v1",
                f"OPENAI_API_KEY={secret}",
                "export OPENAI_BASE_URL OPENAI_API_KEY",
                f"export TOLLWAY_CONTROL_PLANE={cp.admin_url} TOLLWAY_ADMIN_TOKEN={cp.admin_token}",
                f"# Tollway is up: region {region}, {mode}, demo key of tenant {demo_tenant}. Paste the lines "
                "above into a shell for the OpenAI SDK and gatectl; Ctrl-C stops it.",
                f"# Dashboard: {cp.admin_url}/dashboard (sign in with the admin token); metrics: {url}/metrics; "
                f"request log: {dp_settings.request_log}",
            ):
                print(line)
            sys.stdout.flush()
            await wait_for_signal()
        finally:
            await stop_all(started)
        log.info("stopped")

    run_main(main)
