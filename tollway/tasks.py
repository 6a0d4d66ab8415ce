"""Background tasks are started and awaited by their owner; this is how an owner stops one, and how a server
process waits for its stop signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has finished, swallowing its cancellation."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_for_signal() -> None:
    """Until SIGINT or SIGTERM; both mean "stop cleanly"."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def draining() -> Iterator[None]:
    """While a server drains after its stop signal (on the loop): SIGTERM again is ignored rather than ending the
    process mid-drain, as the default action would once ``wait_for_signal`` has removed its handlers. (The kernel
    repeats a worker's death signal once for each thread of its supervisor as they exit.) SIGINT again still
    interrupts."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
