"""A real overload: a publisher process offering about 3x what a CPU-heavy job on local[2]
sustains, the engine's run recorded batch by batch (BatchInfo, RSS of the driver and its
workers) until every published message is processed. Shared by tests/rate/test_overload.py
and bench/backpressure.py.

The job's capacity is measured first, in the same run (``calibrate``), so the offered rate
is 3x what this machine does now, not an absolute figure.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from array import array
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import psutil
from anyio.abc import Process

from aiostream_engine import StreamingContext
from aiostream_engine.dstream.base import DStream
from aiostream_engine.scheduler.batch_info import BatchInfo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITERATIONS = 3000  # the CPU-heavy map: about half a millisecond of Python per record


def heavy(text: str, iterations: int = ITERATIONS) -> int:
    """Burn CPU, then give the message's sequence number."""
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) % 1_000_003
    return int(text.split(" ", 1)[0]) + (0 if acc >= 0 else 1)


#: The MQTT variant's job costs 4x more per message, so that 3x its rate stays within what
#: a Python publisher and the broker move on a shared 2-core machine.
MQTT_ITERATIONS = 4 * ITERATIONS


def heavy_mqtt(record: Any) -> int:
    return heavy(record.payload, MQTT_ITERATIONS)


def _lines(count: int) -> list[str]:
    return [f"{n} calibration" for n in range(count)]


async def calibrate(
    job: Callable[[str], int] = heavy,
    records: int = 5000,
    master: str = "local[2]",
    rounds: int = 3,
) -> float:
    """Records per second ``job`` processes on ``master`` now: the median of ``rounds``
    batches of ``records``, large enough that per-batch overhead hardly counts, after a
    small batch that warms the workers up."""
    async with StreamingContext(1.0, master=master, conf={"worker_nice": 0}) as ssc:

        async def run(rdd: Any) -> None:
            await rdd.acount()

        sizes = [200] + [records] * rounds
        ssc.queue_stream(
            [ssc.spark_context.parallelize(_lines(n), 4) for n in sizes]
        ).map(job).foreach_rdd(run)
        await ssc.start()
        while len(ssc.batch_history) < len(sizes):
            await anyio.sleep(0.05)
        await ssc.stop()
        rates = [info.num_records / (info.processing_delay or math.inf)
                 for info in ssc.batch_history[1:len(sizes)]]
    return statistics.median(rates)


@dataclass
class Sample:
    t: float
    batches: int
    rss_mb: float


@dataclass
class Run:
    """What one run recorded."""

    batch_interval: float
    offered_rate: float
    batches: list[BatchInfo] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    published: list[tuple[float, int]] = field(default_factory=list)
    seen: array[int] = field(default_factory=lambda: array("q"))
    total_published: int | None = None
    start: float = 0.0

    def scheduling_delays(self) -> list[float]:
        return [i.scheduling_delay or 0.0 for i in self.batches]

    def accepted_rate(self, first: int, last: int) -> float:
        window = self.batches[first:last]
        return sum(i.num_records for i in window) / (len(window) * self.batch_interval)

    def processing_rate(self, first: int, last: int) -> float:
        window = self.batches[first:last]
        return sum(i.num_records for i in window) / sum(i.processing_delay or 0.0 for i in window)

    def rss_between(self, first: int, last: int) -> list[float]:
        return [s.rss_mb for s in self.samples if first <= s.batches < last]


def _rss_mb(process: psutil.Process, exclude: set[int]) -> float:
    """RSS of the driver and its worker processes (not the publisher or broker)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        if child.pid in exclude:
            continue
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


@asynccontextmanager
async def publisher(
    kind: str, rate: float, seconds: float, *extra: str
) -> AsyncIterator[tuple[Process, Any]]:
    """Start bench/publisher.py; yields the process and an iterator of its JSON lines."""
    process = await anyio.open_process(
        [sys.executable, "-m", "bench.publisher", kind, "--rate", str(rate),
         "--seconds", str(seconds), *extra],
        cwd=ROOT,
    )
    try:
        yield process, _json_lines(process)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()


async def _json_lines(process: Process) -> AsyncIterator[dict[str, Any]]:
    assert process.stdout is not None
    buffered = b""
    async for chunk in process.stdout:
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            yield json.loads(line)


def collect_into(stream: DStream, run: Run) -> None:
    """The job's output: keep every sequence number it computed (before the start)."""
    seen = run.seen

    async def keep(rdd: Any) -> None:
        seen.extend(await rdd.acollect())

    stream.foreach_rdd(keep)


async def run_overload(
    ssc: StreamingContext,
    run: Run,
    messages: AsyncIterator[dict[str, Any]],
    *,
    min_batches: int,
    drain: bool,
    exclude_pids: set[int],
    stall: float = 30.0,
) -> None:
    """Run until ``min_batches`` batches completed and, with ``drain``, every published
    message was processed; record batches and RSS meanwhile.

    Raises TimeoutError once the run makes no progress (no batch towards ``min_batches``
    completed, no message processed) for ``stall`` seconds: messages lost, or the job
    stuck. A machine that slowed down after ``calibrate`` only takes longer."""
    seen = run.seen
    driver = psutil.Process()
    finished = anyio.Event()

    async def follow_publisher() -> None:
        async for message in messages:
            if "published" in message:
                run.published.append((time.monotonic() - run.start, message["published"]))
            if "done" in message:
                run.total_published = message["done"]

    async def sample() -> None:
        while not finished.is_set():
            run.samples.append(Sample(
                time.monotonic() - run.start, len(ssc.batch_history),
                _rss_mb(driver, exclude_pids),
            ))
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_publisher)
        tg.start_soon(sample)
        progress, progressed_at = (0, 0), time.monotonic()
        while len(ssc.batch_history) < min_batches or (
            drain and (run.total_published is None or len(seen) < run.total_published)
        ):
            now = (min(len(ssc.batch_history), min_batches), len(seen))
            if now != progress:
                progress, progressed_at = now, time.monotonic()
            elif time.monotonic() - progressed_at > stall:
                raise TimeoutError(
                    f"no progress for {stall:g} s: {len(ssc.batch_history)} batches, "
                    f"{len(seen)} messages processed of {run.total_published} published"
                )
            await anyio.sleep(0.05)
        finished.set()
        run.batches = ssc.batch_history
        tg.cancel_scope.cancel()
