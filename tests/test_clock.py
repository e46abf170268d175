"""ManualClock: explicit advance and autojump."""

from __future__ import annotations

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.testing import collect_batches

pytestmark = pytest.mark.anyio


async def test_advance_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock(10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "late", 13.0)
        tg.start_soon(sleeper, "early", 11.0)
        await anyio.wait_all_tasks_blocked()
        clock.advance(1.5)
        await anyio.wait_all_tasks_blocked()
        assert woke == [("early", 11.5)]
        clock.set_time(13.0)
    assert woke == [("early", 11.5), ("late", 13.0)]
    with pytest.raises(ValueError, match="back in time"):
        clock.set_time(1.0)


async def test_autojump_runs_clock_waits_instantly() -> None:
    clock = ManualClock(0.0, autojump=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run_autojump)
        await clock.sleep_until(3600.0)  # an hour of clock time, no wall time
        assert clock.now() == 3600.0
        tg.cancel_scope.cancel()


async def test_autojump_drives_a_streaming_context() -> None:
    clock = ManualClock(0.0, autojump=True)
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        out = collect_batches(ssc.queue_stream([[1], [2], [3]]).map(lambda x: x * 10))
        await ssc.start()
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.run_autojump)
            while len(out) < 3:
                await clock.sleep_until(clock.now() + 1.0)
            tg.cancel_scope.cancel()
    assert out[:3] == [(1.0, [10]), (2.0, [20]), (3.0, [30])]
