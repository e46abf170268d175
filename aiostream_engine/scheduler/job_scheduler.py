"""Runs each batch's jobs in order, records its BatchInfo and tells the listeners."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..clock import Clock
from ..conf import StreamingConf
from ..dstream.output import Job
from ..errors import JobFailedError
from ..executor.task_counts import counting_for
from ..timeutil import to_seconds
from .batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo
from .listener import (
    BatchCompleted,
    BatchStarted,
    BatchSubmitted,
    ListenerBus,
    OutputOperationCompleted,
    OutputOperationStarted,
)


@dataclass
class JobSet:
    time_ms: int
    jobs: list[Job]
    info: BatchInfo
    remaining: int = 0


class JobScheduler:
    def __init__(
        self,
        conf: StreamingConf,
        clock: Clock,
        bus: ListenerBus,
        on_batch_completed: Callable[[int], Awaitable[None]],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._on_batch_completed = on_batch_completed
        self._on_error = on_error
        self._slots = anyio.Semaphore(conf.concurrent_jobs)
        send, receive = anyio.create_memory_object_stream[JobSet](conf.max_pending_batches)
        self._send: MemoryObjectSendStream[JobSet] = send
        self._receive: MemoryObjectReceiveStream[JobSet] = receive
        self.history: deque[BatchInfo] = deque(maxlen=conf.retained_batches)
        self._completed: deque[int] = deque(maxlen=conf.retained_batches)
        self._progress = anyio.Event()
        self.last_completed_ms: int | None = None
        self.pending = 0
        #: Called with each completed batch's BatchInfo before listeners hear of it, on the
        #: data path (not through the listener bus, which a slow listener may hold up).
        self.batch_observers: list[Callable[[BatchInfo], None]] = []

    async def submit(
        self, time_ms: int, jobs: list[Job], inputs: dict[int, StreamInputInfo]
    ) -> None:
        info = BatchInfo(to_seconds(time_ms), inputs, self._clock.now())
        info.output_operation_infos = {
            job.output_id: OutputOperationInfo(info.batch_time, job.output_id, job.name)
            for job in jobs
        }
        self._bus.post(BatchSubmitted(info))
        self.pending += 1
        await self._send.send(JobSet(time_ms, jobs, info, len(jobs)))

    def close(self) -> None:
        """No more batches; ``run`` returns once every submitted batch is done."""
        self._send.close()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg, self._receive:
            async for job_set in self._receive:
                if not job_set.jobs:
                    job_set.info.processing_start_time = self._clock.now()
                    await self._complete(job_set)
                for job in job_set.jobs:
                    await self._slots.acquire()
                    tg.start_soon(self._run_job, job_set, job)

    async def _run_job(self, job_set: JobSet, job: Job) -> None:
        info = job_set.info
        op = info.output_operation_infos[job.output_id]
        try:
            if info.processing_start_time is None:
                info.processing_start_time = self._clock.now()
                self._bus.post(BatchStarted(info))
            op.start_time = self._clock.now()
            self._bus.post(OutputOperationStarted(op))
            try:
                with counting_for(op.tasks):
                    await job.run()
            except Exception as exc:  # reported with batch time and operator, stream goes on
                op.failure_reason = str(exc)
                self._on_error(JobFailedError(info.batch_time, job.name, exc))
            op.end_time = self._clock.now()
            self._bus.post(OutputOperationCompleted(op))
            job_set.remaining -= 1
            if job_set.remaining == 0:
                # Still holding the job slot: with one slot, the next batch starts only after
                # this one's completion work (its state checkpoint) is done.
                await self._complete(job_set)
        finally:
            self._slots.release()

    async def _complete(self, job_set: JobSet) -> None:
        job_set.info.processing_end_time = self._clock.now()
        await self._on_batch_completed(job_set.time_ms)
        self.history.append(job_set.info)
        self._completed.append(job_set.time_ms)
        self.pending -= 1
        self.last_completed_ms = max(self.last_completed_ms or job_set.time_ms, job_set.time_ms)
        for observe in self.batch_observers:
            observe(job_set.info)
        self._bus.post(BatchCompleted(job_set.info))
        self._progress.set()
        self._progress = anyio.Event()

    async def wait_for_batch(self, time_ms: int) -> BatchInfo:
        """Wait until the batch at ``time_ms`` has completed; returns its BatchInfo."""
        while time_ms not in self._completed:
            await self._progress.wait()
        return next(i for i in reversed(self.history) if round(i.batch_time * 1000) == time_ms)
