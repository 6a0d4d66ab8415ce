"""``Deadline``: the request path's timeout block behaves as ``asyncio.timeout_at`` does for its callers; its
timers (``Alarms``) go off on time, at most a tick late, and a cancelled one never does."""

from __future__ import annotations

import asyncio
import functools
import gc

import pytest

from dataplane.upstream.alarms import TICK_S, Alarms
from dataplane.upstream.deadline import Deadline


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    alarms = Alarms(asyncio.get_running_loop())
    started = alarms.time()
    with pytest.raises(TimeoutError), Deadline(alarms, started + 0.05):
        await asyncio.sleep(5)
    assert alarms.time() - started < 1


async def test_a_block_within_its_deadline_is_untouched_and_the_task_can_await_after() -> None:
    alarms = Alarms(asyncio.get_running_loop())
    with Deadline(alarms, alarms.time() + 5) as deadline:
        await asyncio.sleep(0.01)
    assert not deadline.expired
    assert alarms.pending() == 0
    await asyncio.sleep(0.06)  # no cancellation left pending for the task


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    alarms = Alarms(asyncio.get_running_loop())
    entered = asyncio.Event()

    async def waits() -> None:
        with Deadline(alarms, alarms.time() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_inside_an_outer_deadline_is_the_inner_ones() -> None:
    alarms = Alarms(asyncio.get_running_loop())
    with Deadline(alarms, alarms.time() + 5) as outer:
        with pytest.raises(TimeoutError), Deadline(alarms, alarms.time() + 0.02):
            await asyncio.sleep(5)
        await asyncio.sleep(0.01)
    assert not outer.expired


async def test_alarms_of_one_tick_ring_together_never_early_and_at_most_a_tick_late() -> None:
    loop = asyncio.get_running_loop()
    alarms = Alarms(loop)
    base = alarms.time() + 0.05
    rang: dict[str, float] = {}

    def ring(name: str) -> None:
        rang[name] = loop.time()

    whens = {"a": base, "b": base + TICK_S * 0.3, "c": base + TICK_S * 3}
    for name, when in whens.items():
        alarms.at(when, functools.partial(ring, name))
    await asyncio.sleep(0.05 + TICK_S * 6)
    assert set(rang) == {"a", "b", "c"}
    for name, when in whens.items():
        # Never early (the loop's clock may round a timer by a millisecond: uvloop's is in whole ones); late by a
        # tick, and by however long a busy machine keeps the loop from its timers (a generous bound).
        assert when - 0.0011 <= rang[name] <= when + TICK_S + 0.25
    assert alarms.pending() == 0


async def test_a_cancelled_alarm_never_rings_and_its_neighbours_still_do() -> None:
    alarms = Alarms(asyncio.get_running_loop())
    rang: list[str] = []
    when = alarms.time() + 0.02
    kept = alarms.at(when, lambda: rang.append("kept"))
    gone = alarms.at(when, lambda: rang.append("gone"))
    gone.cancel()
    gone.cancel()  # idempotent
    alone = alarms.at(when + 0.5, lambda: rang.append("alone"))
    alone.cancel()  # its tick's last alarm: the loop timer goes with it
    assert alarms.pending() == 1
    await asyncio.sleep(0.02 + TICK_S * 4)
    assert rang == ["kept"]
    kept.cancel()  # after ringing: nothing happens
    assert alarms.pending() == 0


async def test_a_failing_callback_does_not_keep_the_others_of_its_tick_from_ringing() -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
    alarms = Alarms(loop)
    rang: list[int] = []
    when = alarms.time() + 0.01

    def fails() -> None:
        raise RuntimeError("boom")

    for i in range(3):
        alarms.at(when, functools.partial(rang.append, i))
    alarms.at(when, fails)
    await asyncio.sleep(0.01 + TICK_S * 4)
    assert sorted(rang) == [0, 1, 2]
    assert reported == ["alarm callback failed"]


async def test_deadlines_leave_no_garbage_for_the_cyclic_collector() -> None:
    # A deadline's alarm calls back into the deadline that holds it: unless cancelling (or ringing) lets the
    # callback go, each request leaves a cycle, and the collector's passes over them stall the loop.
    alarms = Alarms(asyncio.get_running_loop())
    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            with Deadline(alarms, alarms.time() + 60):
                await asyncio.sleep(0)
        with pytest.raises(TimeoutError), Deadline(alarms, alarms.time() + 0.001):
            await asyncio.sleep(1)
        assert gc.collect() == 0
    finally:
        gc.enable()
