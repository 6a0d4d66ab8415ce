"""Background tasks are started and awaited by their owner; this is how an owner stops one, and how a server
process waits for its stop signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has finished, swallowing its cancellation."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def stop_signals() -> asyncio.Event:
    """From now on SIGINT and SIGTERM set the returned event: "stop cleanly". After the first, SIGTERM again is
    ignored until the loop closes, never falling back to its default action mid-drain (the kernel repeats a
    worker's death signal once for each thread of its dead supervisor, as they exit); SIGINT again interrupts
    (``KeyboardInterrupt``). Call it before the server starts, so that a signal during the start is a clean
    stop too."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM (``stop_signals``)."""
    await stop_signals().wait()
