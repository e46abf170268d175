"""A batch whose output failed is never completed: its logged blocks stay, the checkpoint
keeps it pending. Policy "stop" (default) stops the context with the error and
``get_or_create`` runs the batch again; policy "retry" retries it with backoff while later
batches wait in order. (The real PostgreSQL outage is in ``test_postgres_outage.py``.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import JobFailedError, ManualClock, StreamingContext, StreamingListener
from aiostream_engine.scheduler.listener import OutputOperationFailed
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

pytestmark = pytest.mark.anyio


class FlakyOutput:
    """Records each batch it is given; raises for the batches in ``failing`` as many times
    as their count says (a database that is down for a while)."""

    def __init__(self, failing: dict[float, int] | None = None) -> None:
        self.failing = dict(failing or {})
        self.written: list[tuple[float, list[Any]]] = []
        self.attempts: list[float] = []

    async def __call__(self, time: float, rdd: Any) -> None:
        self.attempts.append(time)
        records = sorted(await rdd.acollect())
        if self.failing.get(time, 0) > 0:
            self.failing[time] -= 1
            raise ConnectionRefusedError(f"database down at batch {time:g}")
        self.written.append((time, records))


class Failures(StreamingListener):
    def __init__(self) -> None:
        self.events: list[OutputOperationFailed] = []

    def on_output_operation_failed(self, event: OutputOperationFailed) -> None:
        self.events.append(event)


def build(directory: Path, clock: ManualClock, receiver: ReliableReceiver, output: FlakyOutput,
          **conf: Any):  # type: ignore[no-untyped-def]
    def setup() -> StreamingContext:
        ssc = StreamingContext(1.0, master="local", clock=clock, conf=wal_conf(**conf))
        ssc.checkpoint(str(directory))
        ssc.receiver_stream(receiver).foreach_rdd(output)
        return ssc

    return setup


async def test_stop_policy_keeps_the_failed_batch_and_get_or_create_runs_it_again(tmp_path: Path) -> None:
    clock, receiver, output = ManualClock(0.0), ReliableReceiver(), FlakyOutput({2.0: 1})
    setup = build(tmp_path, clock, receiver, output)
    async with StreamingContext.get_or_create(str(tmp_path), setup) as ssc:
        await ssc.start()
        for k in (1, 2):
            await feed(receiver, [k * 10, k * 10 + 1])
            clock.set_time(k)
            if k == 2:
                with pytest.raises(JobFailedError, match="batch 2.000: output operation foreach_rdd"):
                    await ssc._job_scheduler.wait_for_batch(2000)
            else:
                await ssc._job_scheduler.wait_for_batch(1000)
        with pytest.raises(JobFailedError) as failure:
            await ssc.await_termination()
        assert isinstance(failure.value.cause, ConnectionRefusedError)
        assert ssc.state.value == "stopped"
        assert [i.batch_time for i in ssc.batch_history] == [1.0]  # batch 2 never completed
    assert output.written == [(1.0, [10, 11])]
    segments = list((tmp_path / "receivedData" / "0").glob("*.wal"))
    assert segments  # batch 2's blocks are still in the log

    clock2, receiver2 = ManualClock(2.5), ReliableReceiver()
    setup = build(tmp_path, clock2, receiver2, output)
    async with StreamingContext.get_or_create(str(tmp_path), setup) as ssc2:
        await ssc2.start()
        with anyio.fail_after(30):
            await ssc2._job_scheduler.wait_for_batch(2000)  # run again, with its own blocks
            await feed(receiver2, [30])
            clock2.set_time(3.0)
            await ssc2._job_scheduler.wait_for_batch(3000)
    assert output.written == [(1.0, [10, 11]), (2.0, [20, 21]), (3.0, [30])]


async def test_retry_policy_retries_with_backoff_while_later_batches_wait_in_order(tmp_path: Path) -> None:
    """Batch 2's output fails 3 times: tried at 2, then 3, 5 and 8 s (backoff 1 s doubling,
    capped at 3 s). Batch 3, due at 3 s, runs only after batch 2 succeeded."""
    clock, receiver, output = ManualClock(0.0), ReliableReceiver(), FlakyOutput({2.0: 3})
    failures = Failures()
    conf = {"output_failure_policy": "retry", "output_retry_backoff": 1.0,
            "output_retry_max_backoff": 3.0}
    async with StreamingContext.get_or_create(
        str(tmp_path), build(tmp_path, clock, receiver, output, **conf)
    ) as ssc:
        ssc.add_streaming_listener(failures)
        await ssc.start()
        with anyio.fail_after(30):
            await feed(receiver, [1])
            clock.set_time(1.0)
            await ssc._job_scheduler.wait_for_batch(1000)
            await feed(receiver, [2])
            await feed_then_set(clock, receiver, output, [3], attempts=2, time=3.0)
            await feed_then_set(clock, receiver, output, [], attempts=3, time=5.0)
            await feed_then_set(clock, receiver, output, [], attempts=4, time=8.0)
            await ssc._job_scheduler.wait_for_batch(8000)
    assert output.written == [(1.0, [1]), (2.0, [2]), (3.0, [3]), (4.0, []), (5.0, []),
                              (6.0, []), (7.0, []), (8.0, [])]
    assert output.attempts == [1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert ssc.errors == []
    assert [(e.attempt, e.retry_in) for e in failures.events] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert all("database down at batch 2" in e.error for e in failures.events)
    assert ssc._job_scheduler.output_failures == 3


async def feed_then_set(clock: ManualClock, receiver: ReliableReceiver, output: FlakyOutput,
                        records: list[Any], *, attempts: int, time: float) -> None:
    """Once ``attempts`` outputs were tried (the last one failed and waits for its retry),
    check nothing after batch 1 was written, feed ``records`` and move the clock to ``time``."""
    if clock.now() < 2.0:
        clock.set_time(2.0)
    while len(output.attempts) < attempts:
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()
    assert output.written == [(1.0, [1])]  # later batches wait behind batch 2
    if records:
        await feed(receiver, records)
    clock.set_time(time)


async def test_batches_complete_in_order_and_a_failed_one_holds_back_later_ones(tmp_path: Path) -> None:
    """With two jobs at once, batch 3 can finish before batch 2; it is recorded completed
    only after 2, and never if 2 failed (then both run again after a restart)."""
    release = anyio.Event()
    done: list[float] = []

    async def output(time: float, rdd: Any) -> None:
        if time == 2.0:
            await release.wait()
            raise ConnectionRefusedError("down")
        done.append(time)

    clock = ManualClock(0.0)
    async with StreamingContext(1.0, master="local", clock=clock, conf={"concurrent_jobs": 2}) as ssc:
        ssc.checkpoint(str(tmp_path))
        ssc.queue_stream([[1], [2], [3]]).foreach_rdd(output)
        await ssc.start()
        with anyio.fail_after(30):
            clock.set_time(1.0)
            await ssc._job_scheduler.wait_for_batch(1000)
            clock.set_time(2.0)
            clock.set_time(3.0)
            while done != [1.0, 3.0]:
                await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            assert [i.batch_time for i in ssc.batch_history] == [1.0]  # 3 waits for 2
            release.set()
            with pytest.raises(JobFailedError):
                await ssc.await_termination()
    assert [i.batch_time for i in ssc.batch_history] == [1.0]
    assert ssc._checkpoints is not None and ssc._checkpoints.last_completed_ms == 1000


async def test_a_batch_whose_jobs_cannot_be_built_stops_the_context_too(tmp_path: Path) -> None:
    def broken(rdd: Any) -> Any:
        raise RuntimeError("transform bug")

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        ssc.queue_stream([[1], [2]]).transform(broken).foreach_rdd(lambda rdd: None)
        await ssc.start()
        ssc.clock.set_time(1.0)  # type: ignore[attr-defined]
        with pytest.raises(JobFailedError, match="batch 1.000: output operation job generation"):
            await ssc._job_scheduler.wait_for_batch(1000)
        with pytest.raises(JobFailedError):
            await ssc.await_termination()
    assert ssc.batch_history == []
