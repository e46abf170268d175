"""W1 and W2 with new data every batch, under the method of ``bench.method`` (run as a
subprocess by ``bench.receiver_feed``), three ways, each with its CPU time per batch:

* ``aiostream-receiver``: a receiver stores each batch's lines as raw lines (``RawLines``,
  four blocks of a quarter of the batch, a quarter second apart, as a receiver with a
  0.25 s block interval does), decoded on the workers as the first stage of the tasks. A
  size whose measured batches do not each hold exactly N lines did not keep up (the
  receiver fell behind) and fails. The receivers' byte budget is raised to 2 GiB: at 1.6M
  readings a batch holds 200 MB, and the default 256 MiB would throttle the receiver;
  what is measured here is processing, not overload;
* ``aiostream-preplaced``: the batch is a queue of one RDD ``parallelize``d before start
  (the figure the README quotes: partitions pickled once into shared memory);
* ``asyncio-pool``: a hand-written micro-batch loop, asyncio and a
  ``ProcessPoolExecutor(2)``: every second the batch's four chunks (bytes) go to the pool,
  each worker decodes, parses and reduces its chunk (``workloads.word_count`` /
  ``device_totals``), the loop merges the four dicts.

And, not peers but the floor under all three, ``bare-work``: the per-record work alone,
the pool's chunk functions over the same four chunks one after the other in one process
(no loop, no pool, no engine); a batch's "time" is its CPU seconds
(``time.process_time``), batches back to back. Half of it is what a batch costs at the
least on two cores, whatever runs it, if two cores did twice the work of one.
``bare-work-2``: the same work split over two processes started at once (two chunks each,
already in place), a batch's time its wall time: what two cores of this machine do.

Every way sees the same lines (the workload's seeded data); the receiver, the loop and the
bare work get them as the same four byte buffers, built before the size's timing starts.
CPU per measured batch: the driver process (every thread) and its worker processes,
separately.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import psutil

from aiostream_engine import DStream, StreamingContext
from aiostream_engine.raw import LineDecoder, RawLines
from aiostream_engine.receiver.base import Receiver

from .child import child_main
from .cpu_share import cpu_seconds
from .engine_runner import EngineSession, bench_conf, size_timeout
from .method import BatchTracker, Job, SizeResult, run_job
from .workloads import device_totals, word_count

BLOCKS = 4
BLOCK_INTERVAL = 0.25
#: Seconds after each block boundary the receiver stores its block: half an interval,
#: clear of the cuts on both sides.
OFFSET = BLOCK_INTERVAL / 2


def chunks_of(lines: list[str], count: int = BLOCKS) -> list[tuple[bytes, int]]:
    """The lines as ``count`` buffers of whole lines, each line followed by ``\\n``."""
    step = -(-len(lines) // count)
    out = []
    for start in range(0, len(lines), step):
        part = lines[start:start + step]
        out.append((("\n".join(part) + "\n").encode(), len(part)))
    return out


class CpuMeter:
    """CPU seconds of this process and of its worker processes, sampled per batch."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self.samples: list[tuple[float, float]] = []

    def sample(self) -> None:
        workers = sum(cpu_seconds(child.pid) for child in self._me.children(recursive=True))
        self.samples.append((cpu_seconds(self._me.pid), workers))

    def per_batch(self, first: int) -> dict[str, float]:
        """Mean CPU per batch from sample ``first`` (taken at a batch's completion) on."""
        span = self.samples[first:]
        if len(span) < 2:
            return {}
        batches = len(span) - 1
        return {
            "driver_cpu_per_batch_s": (span[-1][0] - span[0][0]) / batches,
            "workers_cpu_per_batch_s": (span[-1][1] - span[0][1]) / batches,
        }


class RawFeed(Receiver):
    """Stores the batch's buffers as raw-line blocks, one every block interval, forever."""

    decoder = LineDecoder(strip_cr=False)

    def __init__(self, chunks: list[tuple[bytes, int]]) -> None:
        super().__init__()
        self.chunks = chunks

    async def on_start(self) -> None:
        clock = self.clock
        now = clock.now()
        deadline = (int(now / BLOCK_INTERVAL) + 1) * BLOCK_INTERVAL + OFFSET
        index = 0
        while not self.is_stopped:
            await clock.sleep_until(deadline)
            data, count = self.chunks[index % len(self.chunks)]
            await self.store_block(RawLines(data, count))
            index += 1
            deadline += BLOCK_INTERVAL


class W1W2Only:
    def available(self, workload: str) -> str | None:
        return None if workload in ("W1", "W2") else "W1 and W2 only"


class FedSession(W1W2Only, EngineSession):
    """Our engine, its batches fed by a receiver (``receiver=True``) or pre-placed, with
    the CPU of each batch."""

    def __init__(self, master: str, receiver: bool) -> None:
        super().__init__(master)
        self.receiver = receiver
        self.cpu = CpuMeter()
        self.records: list[int] = []

    def conf(self) -> dict[str, Any]:
        return {**bench_conf(), "block_interval": BLOCK_INTERVAL, "receiver_max_pending_bytes": "2g"}

    def stream(self, ssc: StreamingContext, job: Job, lines: list[str]) -> DStream:
        if self.receiver:
            return ssc.receiver_stream(RawFeed(chunks_of(lines)))
        return super().stream(ssc, job, lines)

    def on_batch(self, info: Any) -> None:
        self.cpu.sample()
        self.records.append(info.num_records)

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult:
        result = super().run_size(job, lines, size)
        off = [n for n in self.records[result.warmup:] if n != size]
        result.extra["batches_not_of_size_n"] = len(off)
        if off:
            result.aborted = True  # the receiver did not keep up: not sustainable
        self.records = []
        return result

    def extra(self, tracker: BatchTracker) -> dict[str, Any]:
        measured = self.cpu.per_batch(tracker.warmup - 1)
        self.cpu = CpuMeter()  # the next size starts afresh
        return measured


# ---- the hand-written peer ------------------------------------------------------------


def w1_chunk(data: bytes) -> dict[str, int]:
    return word_count(data.decode().split("\n")[:-1])


def w2_chunk(data: bytes) -> dict[str, tuple[float, int]]:
    return device_totals(data.split(b"\n")[:-1])


def chunk_work(workload: str) -> Callable[[bytes], dict[str, Any]]:
    """What the peer's workers (and the bare work) do with one chunk of the batch."""
    return w1_chunk if workload == "W1" else w2_chunk


def merge_counts(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        old = into.get(key)
        into[key] = value if old is None else old + value


def merge_pairs(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, (temp, count) in part.items():
        old = into.get(key)
        into[key] = (temp, count) if old is None else (old[0] + temp, old[1] + count)


class PoolLoopSession(W1W2Only):
    """asyncio + ProcessPoolExecutor(2): a batch every interval, its chunks in the pool,
    the partial dicts merged on the loop; batches one after the other, like the engine's
    one job at a time (a late batch starts late)."""

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult:
        return asyncio.run(self._run(job, lines, size))

    def close(self) -> None:
        return None

    async def _run(self, job: Job, lines: list[str], size: int) -> SizeResult:
        plan = job.plan
        chunks = [data for data, _ in chunks_of(lines)]
        work = chunk_work(job.workload)
        merge = merge_counts if job.workload == "W1" else merge_pairs
        tracker = BatchTracker(plan, job.workload)
        cpu = CpuMeter()
        loop = asyncio.get_running_loop()
        wall_start, t0 = time.time(), time.perf_counter()
        first: float | None = None
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(4)))
            deadline = time.perf_counter() + plan.interval
            while not tracker.done and time.perf_counter() - t0 < size_timeout(job):
                await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
                start = time.perf_counter()
                totals: dict[str, Any] = {}
                for part in await asyncio.gather(*(loop.run_in_executor(pool, work, c) for c in chunks)):
                    merge(totals, part)
                tracker.add(time.perf_counter() - start)
                cpu.sample()
                first = first or time.perf_counter()
                deadline += plan.interval
        return SizeResult.from_tracker(
            size, tracker, startup_s=None if first is None else first - t0,
            wall=(wall_start, time.time()), extra=cpu.per_batch(tracker.warmup - 1),
        )


def _bare_worker(conn: Any, chunks: list[bytes], work: Callable[[bytes], Any]) -> None:
    """One process of the bare work: at each go, its chunks, then its CPU seconds."""
    while conn.recv():
        start = time.process_time()
        for chunk in chunks:
            work(chunk)
        conn.send(time.process_time() - start)


class BareWorkSession(W1W2Only):
    """The per-record work alone, in ``processes`` forked processes holding their share of
    the chunks (nothing crosses a pipe but a go and a number), all started at once per
    batch, back to back, never stopped early. A batch's time is its CPU seconds with one
    process, its wall time with more; ``extra`` holds every batch's CPU seconds."""

    def __init__(self, processes: int) -> None:
        self.processes = processes

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult:
        chunks = [data for data, _ in chunks_of(lines)]
        tracker = BatchTracker(dataclasses.replace(job.plan, abort_factor=math.inf), job.workload)
        context = multiprocessing.get_context("fork")
        pipes, processes = [], []
        for share in range(self.processes):
            here, there = context.Pipe()
            args = (there, chunks[share::self.processes], chunk_work(job.workload))
            processes.append(context.Process(target=_bare_worker, args=args))
            processes[-1].start()
            pipes.append(here)
        cpu: list[float] = []
        wall_start = time.time()
        try:
            while not tracker.done:
                start = time.perf_counter()
                for pipe in pipes:
                    pipe.send(True)
                cpu.append(sum(pipe.recv() for pipe in pipes))
                tracker.add(cpu[-1] if self.processes == 1 else time.perf_counter() - start)
        finally:
            for pipe in pipes:
                pipe.send(False)
            for process in processes:
                process.join()
        return SizeResult.from_tracker(size, tracker, wall=(wall_start, time.time()),
                                       extra={"cpu_per_batch_s": cpu})

    def close(self) -> None:
        return None


def session_for(job: Job) -> Any:
    if job.engine == "asyncio-pool":
        return PoolLoopSession()
    if job.engine.startswith("bare-work"):
        return BareWorkSession(2 if job.engine == "bare-work-2" else 1)
    return FedSession(job.master, receiver=job.engine == "aiostream-receiver")


def main() -> None:
    child_main(lambda job: run_job(job, session_for(job)))


if __name__ == "__main__":
    main()
