"""The data plane's own process: ``python -m dataplane.main``, with its settings in ``TOLLWAY_DATAPLANE_SETTINGS``.

``gatectl dataplane serve`` checks its options, then becomes this process (``exec``: the same pid, so signals,
systemd and container runtimes see no difference); a group's supervisor (``dataplane.workers``) starts each worker
as one. It imports only the data plane, not the CLI (typer, pydantic, the policy models: about 14 MB of memory
per process). It logs as ``gatectl`` does, runs on uvloop until SIGTERM or SIGINT, and stops cleanly; a data
plane that cannot start prints ``error: cannot start the data plane: …`` and exits 4, as ``gatectl`` would.
Serving, it runs the garbage collector rarely (``GC_THRESHOLDS``). A worker outlives no supervisor: the kernel
sends it SIGTERM when the process that started it dies, even by SIGKILL (``die_with_supervisor``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import uvloop

from dataplane.settings import DataPlaneSettings
from tollway.tasks import stop_signals

SETTINGS_ENV = "TOLLWAY_DATAPLANE_SETTINGS"
SUPERVISOR_ENV = "TOLLWAY_SUPERVISOR_PID"  # set by a group's supervisor for its workers
_PR_SET_PDEATHSIG = 1  # prctl(2)
# The collector's thresholds once the data plane serves. The request path makes no reference cycles, so with
# CPython's default (a young collection every 700 net allocations, then older ones) the collector ran 80 times a
# second at saturation for nothing: 2-3 % of the CPU, and pauses of up to 4.7 ms (the oldest generation) in the
# latency tail. At 20,000 it did not run once in 8 s at 2,400 requests a second; a cycle made now and then is
# still collected.
GC_THRESHOLDS = (20_000, 50, 100)
UNAVAILABLE = 4  # ``gatectl``'s exit code for "cannot start" (``cli.errors.ExitCode.UNAVAILABLE``)

log = logging.getLogger("gatectl")


def settings_text(settings: DataPlaneSettings) -> str:
    """``settings`` as the environment variable carries them (JSON)."""
    return orjson.dumps(dataclasses.asdict(settings), default=sorted).decode()


def settings_of(text: str) -> DataPlaneSettings:
    fields: dict[str, Any] = orjson.loads(text)
    fields["cors_origins"] = frozenset(fields.get("cors_origins") or ())
    return DataPlaneSettings(**fields)


def environment(settings: DataPlaneSettings, base: Mapping[str, str], supervisor: int | None = None
                ) -> dict[str, str]:
    """The environment of a data-plane process running ``settings`` (a worker of the ``supervisor`` pid)."""
    env = {**base, SETTINGS_ENV: settings_text(settings)}
    if supervisor is not None:
        env[SUPERVISOR_ENV] = str(supervisor)
    return env


def die_with_supervisor(supervisor: int) -> None:
    """Ask the kernel for SIGTERM (a clean drain) when the process that started this one dies, however it
    dies; exit at once if it is gone already (it died before the request took effect). Linux only: elsewhere
    the supervisor's own stop is what stops its workers."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("cannot ask to be stopped with the supervisor (errno %d)", ctypes.get_errno())
    if os.getppid() != supervisor:
        sys.exit(f"error: the supervisor (pid {supervisor}) is gone")


async def serve(settings: DataPlaneSettings) -> None:
    from dataplane.serve import DataPlane

    dp = DataPlane(settings)
    stop = stop_signals()
    try:
        await dp.start()
    except OSError as exc:  # bind failures: the usual reason a server does not start
        raise SystemExit(f"error: cannot start the data plane: {exc.strerror or exc}") from None
    except Exception as exc:  # foreign errors of the start (grpc, the disk) end here, as one line
        raise SystemExit(f"error: cannot start the data plane: {exc}") from exc
    log.info("data plane %s (region %s) serving on %s", settings.node_id, settings.region, dp.url)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await stop.wait()
    finally:
        await dp.stop()
    log.info("data plane stopped")


def main() -> None:
    text = os.environ.pop(SETTINGS_ENV, None)
    if text is None:
        sys.exit(f"error: {SETTINGS_ENV} is not set (start a data plane with `gatectl dataplane serve`)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    if supervisor is not None:
        die_with_supervisor(int(supervisor))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings_of(text)))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            sys.exit(UNAVAILABLE)
        raise
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
