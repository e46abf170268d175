"""Executor backends: worker death, event-loop responsiveness, retries."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingConf, StreamingContext
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.process_pool import ProcessPoolBackend
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio

#: Period of the event-loop lag probe, seconds.
TICK = 0.01


def _burn(seconds: float):  # type: ignore[no-untyped-def]
    def work(x: int) -> int:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return x

    return work


def _announce_then_burn(address: str, seconds: float):  # type: ignore[no-untyped-def]
    burn = _burn(seconds)

    def work(x: int) -> int:
        import socket

        with socket.socket(socket.AF_UNIX) as announce:  # tell the test: a task runs now
            announce.connect(address)
        return burn(x)

    return work


async def test_worker_killed_mid_batch_loses_no_record_and_stream_goes_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    batches = [list(range(i * 10, i * 10 + 10)) for i in range(3)]
    address = str(tmp_path / "announce.sock")
    listener = await anyio.create_unix_listener(address)
    async with StreamingContext(1.0, master="local[2]", clock=clock) as ssc:
        out = collect_batches(ssc.queue_stream(batches).map(_announce_then_burn(address, 0.05)))
        await ssc.start()
        backend = ssc.spark_context.backend
        assert isinstance(backend, ProcessPoolBackend)
        victim = backend.worker_pids()[0]
        async with anyio.create_task_group() as tg:
            tg.start_soon(_kill_on_first_announcement, listener, victim)
            await advance_batches(ssc, 3)
            await listener.aclose()
        assert backend.replacements == 1
        assert victim not in backend.worker_pids()
    assert ssc.errors == []
    assert [sorted(r) for _, r in out] == batches


async def _kill_on_first_announcement(listener, victim: int) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL a worker as soon as a task of batch 1 runs; then answer the other tasks."""
    await (await listener.accept()).aclose()
    os.kill(victim, signal.SIGKILL)
    try:
        while True:
            await (await listener.accept()).aclose()
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        return


async def test_event_loop_stays_responsive_during_cpu_heavy_batch() -> None:
    """2 s of CPU work on local[2]; a 10 ms ticker on the loop: the loop's thread never
    works 50 ms at a stretch, and never waits as long as one task's CPU (0.5 s).

    The stretch of work is the loop thread's own CPU time across a tick (it cannot grow
    because other programs load the machine); the wall-clock lag can, so it is held only
    to what would show a task run on, or waited for by, the loop."""
    ticks: list[tuple[float, float]] = []  # (wall-clock lag, loop thread CPU) per tick
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        out = collect_batches(
            ssc.queue_stream([ssc.spark_context.parallelize(range(8), 4)]).map(_burn(0.5))
        )
        await ssc.start()
        finished = anyio.Event()

        async def ticker() -> None:
            # Real time on purpose: the lag of a wall-clock sleep is what is measured.
            while not finished.is_set():
                start, cpu = time.perf_counter(), time.thread_time()
                await anyio.sleep(TICK)
                ticks.append((time.perf_counter() - start - TICK, time.thread_time() - cpu))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            started = time.perf_counter()
            await advance_batches(ssc, 1)
            elapsed = time.perf_counter() - started
            finished.set()
    assert sorted(out[0][1]) == list(range(8))
    assert elapsed >= 1.9  # 8 x 0.5 s of CPU on two workers
    assert len(ticks) > 100
    worked = max(cpu for _, cpu in ticks)
    assert worked < 0.05, f"the event loop worked {worked * 1000:.0f} ms without a break"
    lagged = max(lag for lag, _ in ticks)
    assert lagged < 0.5, f"event loop lagged {lagged * 1000:.0f} ms"


@pytest.mark.parametrize("master", ["local", "local[2]"])
async def test_task_retried_until_it_succeeds(master: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A task failing twice then succeeding is retried (task_max_failures=4)."""
    marker = tmp_path / "attempts"

    def flaky(x: int) -> int:
        with open(marker, "a") as f:
            f.write("x")
        if len(marker.read_text()) < 3:
            raise RuntimeError("transient")
        return x * 2

    runner = TaskRunner(backend_for(master), StreamingConf())
    await runner.start()
    try:
        assert await runner.parallelize([1, 2, 3], 1).map(flaky).acollect() == [2, 4, 6]
        assert runner.task_failures == 2
    finally:
        await runner.stop()


async def test_worker_process_does_not_import_user_main_module() -> None:
    runner = TaskRunner(backend_for("local[1]"), StreamingConf())
    await runner.start()
    try:
        mains = await runner.parallelize([0], 1).map(
            lambda _: __import__("sys").modules["__main__"].__spec__.name
        ).acollect()
    finally:
        await runner.stop()
    assert mains == ["aiostream_engine.executor.worker"]


def gc_thresholds(_: object) -> list[tuple[int, ...]]:
    import gc

    return [gc.get_threshold()]


@pytest.mark.parametrize(("threshold", "expected"), [(50_000, (50_000, 20, 100)), (0, (700, 10, 10))])
async def test_worker_gc_threshold_sets_the_workers_collector(
    threshold: int, expected: tuple[int, ...]
) -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(0.0),
                                conf={"worker_gc_threshold": threshold}) as ssc:
        ssc.queue_stream([[1]]).foreach_rdd(lambda rdd: None)
        await ssc.start()
        seen = await ssc.spark_context.parallelize([1, 2], 2).map_partitions(gc_thresholds).acollect()
    assert seen == [expected, expected]
