"""``Deadline``: the request path's timeout block behaves as ``asyncio.timeout_at`` does for its callers."""

from __future__ import annotations

import asyncio

import pytest

from dataplane.upstream.deadline import Deadline


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), Deadline(loop, started + 0.05):
        await asyncio.sleep(5)
    assert loop.time() - started < 1


async def test_a_block_within_its_deadline_is_untouched_and_the_task_can_await_after() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 5) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired
    await asyncio.sleep(0.06)  # no cancellation left pending for the task


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def waits() -> None:
        with Deadline(loop, loop.time() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_inside_an_outer_deadline_is_the_inner_ones() -> None:
    loop = asyncio.get_running_loop()
    with Deadline(loop, loop.time() + 5) as outer:
        with pytest.raises(TimeoutError), Deadline(loop, loop.time() + 0.02):
            await asyncio.sleep(5)
        await asyncio.sleep(0.01)
    assert not outer.expired
