"""Receivers, blocks, backpressure, restarts and graceful stop, on a ManualClock."""

from __future__ import annotations

import anyio
import pytest

from aiostream_engine import ManualClock, Receiver, StreamingContext, StreamingListener
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio


class ListReceiver(Receiver):
    """Stores the records it is handed through ``feed``, then waits for more."""

    def __init__(self) -> None:
        super().__init__()
        self.send, self.receive = anyio.create_memory_object_stream[list[int]](100)

    async def on_start(self) -> None:
        async for records in self.receive:
            for record in records:
                await self.store(record)


async def _settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_records_land_in_the_batch_they_were_stored_before() -> None:
    clock = ManualClock()
    receiver = ListReceiver()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        out = collect_batches(ssc.receiver_stream(receiver))
        await ssc.start()
        await receiver.send.send([1, 2])
        await _settle()
        clock.set_time(0.4)  # two block intervals: one block
        await receiver.send.send([3])
        await _settle()
        await advance_batches(ssc, 1)
        await receiver.send.send([4])
        await _settle()
        await advance_batches(ssc, 2)
    assert [(t, sorted(r)) for t, r in out] == [(1.0, [1, 2, 3]), (2.0, [4]), (3.0, [])]


async def test_each_block_is_one_partition() -> None:
    clock = ManualClock()
    receiver = ListReceiver()
    partitions: list[list[list[int]]] = []
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:

        async def keep(rdd):  # type: ignore[no-untyped-def]
            partitions.append(await rdd.glom().acollect())

        ssc.receiver_stream(receiver).foreach_rdd(keep)
        await ssc.start()
        for i, t in enumerate([0.2, 0.4, 0.6]):
            await receiver.send.send([i])
            await _settle()
            clock.set_time(t)
            await _settle()
        await advance_batches(ssc, 1)
    assert partitions == [[[0], [1], [2]]]


async def test_full_block_queue_makes_store_wait() -> None:
    clock = ManualClock()
    receiver = ListReceiver()
    conf = {"block_queue_size": 2}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        out = collect_batches(ssc.receiver_stream(receiver))
        await ssc.start()
        blocks = ssc._receiver_tracker.generators[0]
        for t in (0.2, 0.4):
            await receiver.send.send([int(t * 10)])
            await _settle()
            clock.set_time(t)
            await _settle()
        assert blocks.queued_blocks == 2
        await receiver.send.send([6, 7])
        await _settle()
        assert blocks.records_stored == 2  # the queue is full: store waits
        clock.set_time(0.6)
        await _settle()
        assert blocks.records_stored == 2
        await advance_batches(ssc, 1)  # batch 1 takes the blocks and frees the queue
        await _settle()
        assert blocks.records_stored == 4
        await advance_batches(ssc, 1)
    assert [sorted(r) for _, r in out] == [[2, 4], [6, 7]]


class FlakyReceiver(Receiver):
    """Fails on its first run after storing one record, then stores and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0
        self.stops = 0

    async def on_start(self) -> None:
        self.runs += 1
        await self.store(self.runs)
        if self.runs == 1:
            raise ConnectionError("device went away")

    async def on_stop(self) -> None:
        self.stops += 1


async def test_failed_receiver_is_restarted_after_backoff_and_reported() -> None:
    clock = ManualClock()
    receiver = FlakyReceiver()
    events: list[str] = []

    class Recorder(StreamingListener):
        def on_receiver_started(self, event):  # type: ignore[no-untyped-def]
            events.append("started")

        def on_receiver_error(self, event):  # type: ignore[no-untyped-def]
            events.append(f"error: {event.receiver_info.last_error}")

        def on_receiver_stopped(self, event):  # type: ignore[no-untyped-def]
            events.append("stopped")

    conf = {"receiver_restart_delay": 0.5}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        ssc.add_streaming_listener(Recorder())
        out = collect_batches(ssc.receiver_stream(receiver))
        await ssc.start()
        await _settle()
        assert receiver.runs == 1
        clock.set_time(0.8)  # backoff is 0.25..0.75 s of the context's clock
        await _settle()
        assert receiver.runs == 2
        await advance_batches(ssc, 1)
        await ssc.stop(graceful=True)
    assert receiver.stops == 2
    assert sorted(out[0][1]) == [1, 2]
    assert events == ["started", "error: ConnectionError: device went away", "started", "stopped"]


async def test_graceful_stop_processes_records_still_in_the_buffer() -> None:
    clock = ManualClock()
    receiver = ListReceiver()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        out = collect_batches(ssc.receiver_stream(receiver))
        await ssc.start()
        await receiver.send.send([1, 2, 3])
        await _settle()
        await ssc.stop(graceful=True)
    assert [(t, sorted(r)) for t, r in out] == [(1.0, [1, 2, 3])]


async def test_max_rate_limits_records_per_second() -> None:
    clock = ManualClock()
    receiver = ListReceiver()
    conf = {"spark.streaming.receiver.maxRate": 10}
    async with StreamingContext(1.0, master="local", clock=clock, conf=conf) as ssc:
        out = collect_batches(ssc.receiver_stream(receiver))
        await ssc.start()
        await receiver.send.send(list(range(25)))
        await _settle()
        for _ in range(3):
            await advance_batches(ssc, 1)
            await _settle()
    counts = [len(r) for _, r in out]
    assert sum(counts) == 25
    assert max(counts) <= 11  # at most one second of burst above the rate


class SlowClosingReceiver(ListReceiver):
    """Its on_stop takes a few loop iterations, like closing a network connection."""

    async def on_stop(self) -> None:
        for _ in range(20):
            await anyio.lowlevel.checkpoint()


async def test_a_hard_stop_still_reports_every_receiver_stopped() -> None:
    stopped: list[str] = []

    class Recorder(StreamingListener):
        def on_receiver_stopped(self, event):  # type: ignore[no-untyped-def]
            stopped.append(event.receiver_info.name)

    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.add_streaming_listener(Recorder())
        collect_batches(ssc.union(ssc.receiver_stream(SlowClosingReceiver()),
                                  ssc.receiver_stream(SlowClosingReceiver())))
        await ssc.start()
        await _settle()
        await ssc.stop(graceful=False)
    assert stopped == ["SlowClosingReceiver", "SlowClosingReceiver"]
