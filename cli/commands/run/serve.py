"""``controlplane serve`` and ``dataplane serve``: thin wrappers that build settings and run the servers.

``run_services`` owns the event loop (uvloop): it starts the services in order, waits for SIGINT/SIGTERM, then
stops them in reverse order. A service that cannot start (port taken, store unreachable) becomes a
``StartupFailed`` error, an expected failure with one line on stderr and no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Annotated, Any, Protocol

import typer
import uvloop

from cli.errors import StartupFailed, exit_on_error
from cli.options import AdminTokenOpt, ControlPlaneOpt, OutputOpt, connect
from cli.render.output import OutputFormat, table, to_json, to_yaml_documents
from controlplane.settings import ControlPlaneSettings
from dataplane.settings import DataPlaneSettings
from tollway.tasks import wait_for_signal

log = logging.getLogger("gatectl")


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_main(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on a uvloop event loop; ``StartupFailed`` and friends reach ``exit_on_error``."""
    with exit_on_error(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def start_all(services: Sequence[tuple[str, Service]]) -> list[Service]:
    """Start in order; if one fails, stop the ones already started and raise ``StartupFailed``."""
    started: list[Service] = []
    for name, service in services:
        try:
            await service.start()
        except OSError as exc:  # bind failures: the usual reason a server does not start
            await stop_all(started)
            raise StartupFailed(f"cannot start the {name}: {exc.strerror or exc}") from None
        except Exception as exc:  # foreign errors of a server's start (store, grpc) end here, as one line
            await stop_all(started)
            raise StartupFailed(f"cannot start the {name}: {exc}") from exc
        started.append(service)
    return started


async def stop_all(services: Sequence[Service]) -> None:
    for service in reversed(services):
        await service.stop()


controlplane_app = typer.Typer(help="Run the control plane.", no_args_is_help=True)


def _check_usage_store(url: str | None) -> str | None:
    from controlplane.usage.open import url_problem

    problem = url_problem(url) if url else None
    if problem is not None:
        raise typer.BadParameter(problem)
    return url
dataplane_app = typer.Typer(help="Run a data plane.", no_args_is_help=True)


@controlplane_app.command("serve")
def controlplane_serve(
    store: Annotated[str | None, typer.Option(
        "--store", help="etcd://HOST:PORT[,HOST:PORT] or embedded:///DIR [default: embedded store in state-dir]",
        show_default=False)] = None,
    usage_store: Annotated[str | None, typer.Option(
        "--usage-store", envvar="TOLLWAY_USAGE_STORE", callback=_check_usage_store, show_default=False,
        help="Where usage events go: postgresql://USER@HOST[:PORT]/DB, shared by several replicas (password in "
        "PGPASSWORD or ~/.pgpass), or duckdb:///FILE [default: embedded DuckDB in state-dir, one machine]")] = None,
    admin_host: Annotated[str, typer.Option("--admin-host")] = "127.0.0.1",
    admin_port: Annotated[int, typer.Option("--admin-port", min=0, max=65535)] = 7070,
    grpc_host: Annotated[str, typer.Option("--grpc-host")] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option("--grpc-port", min=0, max=65535)] = 7071,
    state_dir: Annotated[str, typer.Option("--state-dir", help="Tokens (and the embedded store)")]
    = ".tollway/controlplane",
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="TOLLWAY_ADMIN_TOKEN", show_default=False,
        help="[default: generated once into state-dir]")] = None,
    dataplane_token: Annotated[str | None, typer.Option(
        "--dataplane-token", envvar="TOLLWAY_DATAPLANE_TOKEN", show_default=False,
        help="Token data planes present [default: generated once into state-dir]")] = None,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="gRPC server certificate (PEM)")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="gRPC server key (PEM)")] = None,
    tls_client_ca: Annotated[str | None, typer.Option("--tls-client-ca", help="Require client certs (mTLS)")]
    = None,
    metrics_require_token: Annotated[bool, typer.Option(
        "--metrics-require-token", help="Require the admin token on /metrics (open to scrapers by default)")]
    = False,
    lease_ttl: Annotated[float, typer.Option(
        "--lease-ttl", min=5.0, help="Seconds a budget grant stays valid: how long data planes keep serving "
        "budgeted tenants while the control plane is away")] = 900.0,
    alert_refusing: Annotated[float, typer.Option(
        "--alert-refusing-seconds", min=1.0, help="Raise a ratelimit.refusing alert when a rate-limit scope keeps "
        "refusing this long")] = 60.0,
    replica_id: Annotated[str | None, typer.Option(
        "--replica-id", show_default=False, help="This replica's name among several on one etcd "
        "[default: HOSTNAME-GRPCPORT]")] = None,
    ha_ttl: Annotated[float, typer.Option(
        "--ha-ttl", min=2.0, help="Seconds of the replica's etcd lease: a dead replica's singleton duties move to "
        "another within 4/3 of this")] = 5.0,
) -> None:
    """Run the control plane: admin HTTP API and the gRPC discovery service."""
    settings = ControlPlaneSettings(
        store_url=store, state_dir=state_dir, admin_host=admin_host, admin_port=admin_port, grpc_host=grpc_host,
        grpc_port=grpc_port, admin_token=admin_token, dataplane_token=dataplane_token, tls_cert=tls_cert,
        tls_key=tls_key, tls_client_ca=tls_client_ca, metrics_require_token=metrics_require_token,
        lease_ttl_seconds=lease_ttl, alert_refusing_seconds=alert_refusing, replica_id=replica_id or "",
        ha_ttl_seconds=ha_ttl, usage_store_url=usage_store,
    )
    configure_logging()

    async def main() -> None:
        from controlplane.server import ControlPlane
        from controlplane.usage.postgres import redact

        cp = ControlPlane(settings)
        started = await start_all([("control plane", cp)])
        log.info("control plane ready: admin API %s, gRPC %s, tokens in %s, usage in %s", cp.admin_url,
                 cp.grpc_target, state_dir, redact(settings.effective_usage_store_url))
        try:
            await wait_for_signal()
        finally:
            await stop_all(started)
        log.info("control plane stopped")

    run_main(main)


@dataplane_app.command("serve")
def dataplane_serve(
    control_plane: Annotated[str, typer.Option(
        "--control-plane", envvar="TOLLWAY_DISCOVERY", help="The control plane's gRPC address, HOST:PORT, or its "
        "replicas' HOST:PORT,HOST:PORT,... (failing over between them)")],
    region: Annotated[str, typer.Option("--region", help="The region this data plane serves")],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
    state_dir: Annotated[str, typer.Option("--state-dir", help="Last good snapshot, usage spool")]
    = ".tollway/dataplane",
    token: Annotated[str | None, typer.Option(
        "--token", envvar="TOLLWAY_DATAPLANE_TOKEN", show_default=False,
        help="The control plane's data-plane token")] = None,
    node_id: Annotated[str | None, typer.Option("--node-id", show_default=False,
                                                help="[default: HOSTNAME-PORT, stable across restarts]")] = None,
    tls_ca: Annotated[str | None, typer.Option("--tls-ca", help="CA of the control plane's certificate")] = None,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="Client certificate (mTLS)")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="Client key (mTLS)")] = None,
    tls_server_name: Annotated[str | None, typer.Option(
        "--tls-server-name", show_default=False, help="The host name the control plane's certificate is checked "
        "against; with several replicas, one name every replica's certificate carries [default: the host of "
        "--control-plane]")] = None,
    request_log: Annotated[str, typer.Option(
        "--request-log", help="Structured JSON request log: a file (rotated) or - for standard output; "
        "content only as each tenant's logging mode allows (docs/logging.md)")] = "",
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="A browser origin allowed to call the API (repeatable; * for any); CORS is off "
        "without one")] = None,
    max_in_flight: Annotated[int, typer.Option(
        "--max-in-flight", min=1, help="Requests served at once; more are refused at once with 503")] = 512,
    fast_path: Annotated[bool, typer.Option(
        "--fast-path/--no-fast-path", help="Serve whole, non-streamed inference requests at the connection edge, "
        "without aiohttp's request machinery")] = True,
    overload_lag_ms: Annotated[float, typer.Option(
        "--overload-lag-ms", min=0, help="Shed below --max-in-flight while the event loop lags more than this "
        "on average over 200 ms (0: only the fixed limit)")] = 10.0,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", min=0.1, help="Seconds a request's headers may take from their first byte (408)")]
    = 20.0,
    keepalive_timeout: Annotated[float, typer.Option(
        "--keepalive-timeout", min=0.1, help="Seconds a connection may stay idle before it is closed")] = 60.0,
    min_body_rate: Annotated[int, typer.Option(
        "--min-body-rate", min=1, help="Bytes a second a request body must arrive at, after a 10 s grace (408)")]
    = 16 * 1024,
    max_connections_per_client: Annotated[int, typer.Option(
        "--max-connections-per-client", min=0, help="Connections one client address may hold open (0: no limit)")]
    = 0,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="Worker processes on the port (SO_REUSEPORT), each a full data plane; 0: one "
        "per core", show_default=True)] = 0,
    ops_port: Annotated[int | None, typer.Option(
        "--ops-port", min=0, max=65535, help="With several workers: the group's /metrics and /healthz "
        "[default: --port + 1]", show_default=False)] = None,
    otlp_endpoint: Annotated[str, typer.Option(
        "--otlp-endpoint", help="Export OpenTelemetry traces over OTLP/HTTP to this base URL (/v1/traces is "
        "appended); without it, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT decides, and no endpoint means no tracing")]
    = "",
    trace_sampling: Annotated[float | None, typer.Option(
        "--trace-sampling", min=0.0, max=1.0, help="The share of requests traced (parent-based: a client's "
        "sampled traceparent is honoured) [default: OTEL_TRACES_SAMPLER, else all]", show_default=False)] = None,
) -> None:
    """Run a data plane: the OpenAI-compatible proxy of one region."""
    from dataplane.sync.channel import control_plane_problem

    problem = control_plane_problem(control_plane, tls=bool(tls_ca or tls_cert), server_name=tls_server_name)
    if problem is not None:
        raise typer.BadParameter(f"the value {control_plane!r} {problem}", param_hint="'--control-plane'")
    settings = DataPlaneSettings(
        host=host, port=port, region=region, control_plane=control_plane, control_plane_token=token,
        state_dir=state_dir, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, tls_server_name=tls_server_name,
        request_log=request_log,
        cors_origins=frozenset(cors_origin or ()), max_in_flight=max_in_flight,
        overload_lag_s=overload_lag_ms / 1000, fast_path=fast_path, header_timeout_s=header_timeout,
        keepalive_timeout_s=keepalive_timeout,
        min_body_bytes_per_s=min_body_rate,
        max_connections_per_client=max_connections_per_client,
        otlp_endpoint=otlp_endpoint, trace_sampling=trace_sampling,
    )
    # A restarted data plane keeps its identity, so `gatectl dataplanes` shows one entry per data plane.
    # (Port 0 is only for tests: there the process id tells data planes apart.)
    if node_id or port:
        settings = replace(settings, node_id=node_id or f"{socket.gethostname()}-{port}")
    count = workers or os.cpu_count() or 1
    if count > 1:
        configure_logging()
        _serve_group(settings, count, ops_port if ops_port is not None else (port + 1 if port else 0))
        return
    # The data plane's own lean process from here on (``dataplane.main``: the same pid, none of the CLI loaded).
    from dataplane.main import environment

    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "dataplane.main"], environment(settings, os.environ))


@controlplane_app.command("status")
def controlplane_status(
    output: OutputOpt = OutputFormat.table,
    control_plane: ControlPlaneOpt = None,
    admin_token: AdminTokenOpt = None,
) -> None:
    """The replicas, which one holds the singleton duties, the store's health, each replica's data planes."""
    with exit_on_error():
        answer = connect(control_plane, admin_token).controlplane_status()
        if output is not OutputFormat.table:
            print(to_json(answer) if output is OutputFormat.json else to_yaml_documents([answer]), end="")
            return
        store = answer.get("store") or {}
        health = "healthy" if store.get("healthy") else f"UNHEALTHY: {store.get('error', '')}"
        print(f"store: {store.get('backend', '-')} {health} ({store.get('latencyMs', '-')} ms)")
        print(f"singleton duties held by: {answer.get('dutyHolder') or 'nobody (an election is under way)'}")
        rows = [[str(r.get("replica", "-")), str(r.get("grpcTarget", "-")), str(r.get("adminUrl", "-")),
                 "yes" if r.get("holdsDuties") else "no", ", ".join(r.get("dataplanes") or []) or "-"]
                for r in answer.get("replicas") or [] if isinstance(r, dict)]
        print(table(("REPLICA", "GRPC", "ADMIN", "DUTIES", "DATA PLANES"), rows))


def _serve_group(settings: DataPlaneSettings, workers: int, ops_port: int) -> None:
    """``workers`` data planes on one port, supervised by this process (``dataplane.workers``)."""
    async def main() -> None:
        from dataplane.workers import Supervisor

        group = Supervisor(settings, workers, ops_host=settings.host, ops_port=ops_port)
        started = await start_all([("data-plane group", group)])
        log.info("data plane group %s (region %s): %d workers on http://%s:%d, group /metrics and /healthz on %s",
                 settings.node_id, settings.region, workers, settings.host, group.port, group.ops_url)
        try:
            await wait_for_signal()
        finally:
            await stop_all(started)
        log.info("data plane group stopped")

    run_main(main)
