"""Overload on a ManualClock: a source that offers without end, an output whose processing
takes clock time in proportion to its records, and a driver that moves the clock in small
steps, so the rate controller sees real processing and scheduling delays, deterministically
and without sleeping."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

from aiostream_engine import ManualClock, Receiver, StreamingContext, StreamingListener
from aiostream_engine.dstream.base import DStream
from aiostream_engine.scheduler.listener import StreamRateUpdated

STEP = 0.01  # seconds the driver moves the clock at a time


class Endless(Receiver):
    """Offers consecutive integers without end, ``chunk`` at a time: only the rate bound
    holds it back."""

    def __init__(self, start: int = 0, chunk: int = 1) -> None:
        super().__init__()
        self.next = start
        self.chunk = chunk

    async def on_start(self) -> None:
        while True:
            if self.chunk == 1:
                await self.store(self.next)
            else:
                await self.store_many(range(self.next, self.next + self.chunk))
            self.next += self.chunk
            await anyio.lowlevel.checkpoint()


class SlowOutput:
    """An output that keeps every record and takes ``overhead + per_record * n`` seconds of
    clock time for a batch of n records. Collecting runs in a thread (master "local"):
    ``busy`` tells the driver not to move the clock meanwhile, so runs are deterministic."""

    def __init__(
        self, stream: DStream, clock: ManualClock, per_record: float, overhead: float = 0.0
    ) -> None:
        self.seen: list[Any] = []
        self.busy = 0
        self._clock = clock
        self._per_record = per_record
        self._overhead = overhead
        stream.foreach_rdd(self._work)

    async def _work(self, rdd: Any) -> None:
        self.busy += 1
        try:
            records = await rdd.acollect()
        finally:
            self.busy -= 1
        self.seen.extend(records)
        clock = self._clock
        await clock.sleep_until(clock.now() + self._overhead + self._per_record * len(records))


async def settle(rounds: int = 3) -> None:
    """Return once the event loop has had nothing ready for ``rounds`` passes: everything
    the last clock move woke has run (anyio's wait_all_tasks_blocked polls every 0.1 s)."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    quiet = 0
    while quiet < rounds:
        await asyncio.sleep(0)
        quiet = quiet + 1 if not ready else 0


async def run_until(ssc: StreamingContext, batches: int, *outputs: SlowOutput) -> None:
    """Move the context's ManualClock in steps of STEP, letting everything it wakes run
    (and the outputs collect), until ``batches`` batches have completed."""
    clock = ssc.clock
    assert isinstance(clock, ManualClock)
    await settle()
    while len(ssc.batch_history) < batches:
        clock.advance(STEP)
        await settle()
        while any(o.busy for o in outputs):
            await anyio.sleep(0.0005)
            await settle()


class RateEvents(StreamingListener):
    def __init__(self) -> None:
        self.events: list[StreamRateUpdated] = []

    def on_stream_rate_updated(self, event: StreamRateUpdated) -> None:
        self.events.append(event)


async def stop_gracefully(ssc: StreamingContext, *outputs: SlowOutput) -> None:
    """Stop gracefully (every received record processed) while moving the clock."""
    clock = ssc.clock
    assert isinstance(clock, ManualClock)
    stopped = anyio.Event()

    async def stop() -> None:
        await ssc.stop(graceful=True)
        stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop)
        while not stopped.is_set():
            clock.advance(STEP)
            await settle()
            while any(o.busy for o in outputs):
                await anyio.sleep(0.0005)
                await settle()
