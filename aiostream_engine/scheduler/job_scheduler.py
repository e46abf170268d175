"""Runs each batch's jobs in order, records its BatchInfo and tells the listeners.

Batches complete in batch order, even when ``concurrent_jobs`` lets a later batch's jobs
finish first: the checkpoint's "completed up to t" then always means every batch up to t,
and a batch that never completes keeps every later one pending with it.

A batch whose output failed is never completed: its blocks stay in the write-ahead log and
the checkpoint keeps it pending. ``output_failure_policy`` decides what follows:

* ``"stop"`` (the default): the batch fails with ``JobFailedError`` naming the operator and
  batch time, and the context stops with it (``await_termination`` raises it);
  ``get_or_create`` then runs the batch again.
* ``"retry"``: the failed output operation is run again after ``output_retry_backoff``
  seconds, doubling up to ``output_retry_max_backoff``, for as long as it fails; later
  batches wait their turn behind it. Each failure is logged, counted
  (``output_failures``) and posted (``OutputOperationFailed``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..clock import Clock
from ..conf import StreamingConf
from ..dstream.output import Job
from ..errors import ContextStateError, JobFailedError, StreamingError
from ..executor.task_counts import counting_for
from ..timeutil import to_seconds
from .batch_info import BatchInfo, OutputOperationInfo, StreamInputInfo
from .listener import (
    BatchCompleted,
    BatchStarted,
    BatchSubmitted,
    ListenerBus,
    OutputOperationCompleted,
    OutputOperationFailed,
    OutputOperationStarted,
)

log = logging.getLogger("aiostream_engine.scheduler")


@dataclass
class JobSet:
    time_ms: int
    jobs: list[Job]
    info: BatchInfo
    remaining: int = 0
    #: Set once this batch has completed (the next batch completes only after it).
    done: anyio.Event = field(default_factory=anyio.Event)
    previous: anyio.Event | None = None


class JobScheduler:
    def __init__(
        self,
        conf: StreamingConf,
        clock: Clock,
        bus: ListenerBus,
        on_batch_completed: Callable[[int], Awaitable[None]],
        on_batch_failed: Callable[[StreamingError], None],
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._on_batch_completed = on_batch_completed
        self._on_batch_failed = on_batch_failed
        self._retry = conf.output_failure_policy == "retry"
        self._backoff = conf.output_retry_backoff
        self._max_backoff = conf.output_retry_max_backoff
        self._slots = anyio.Semaphore(conf.concurrent_jobs)
        send, receive = anyio.create_memory_object_stream[JobSet](conf.max_pending_batches)
        self._send: MemoryObjectSendStream[JobSet] = send
        self._receive: MemoryObjectReceiveStream[JobSet] = receive
        self.history: deque[BatchInfo] = deque(maxlen=conf.retained_batches)
        self._completed: deque[int] = deque(maxlen=conf.retained_batches)
        self._failed: dict[int, StreamingError] = {}
        self._progress = anyio.Event()
        self._tail: anyio.Event | None = None
        self._stopped = False
        self.last_completed_ms: int | None = None
        self.pending = 0
        #: Called with each completed batch's BatchInfo before listeners hear of it, on the
        #: data path (not through the listener bus, which a slow listener may hold up).
        self.batch_observers: list[Callable[[BatchInfo], None]] = []
        #: Failed attempts of output operations (each retry's failure counts).
        self.output_failures = 0

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
        job_set = JobSet(time_ms, jobs, info, len(jobs), previous=self._tail)
        self._tail = job_set.done
        await self._send.send(job_set)

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
            if not await self._run_until_done(job_set, job, op):
                return  # the batch failed: it never completes
            job_set.remaining -= 1
            if job_set.remaining == 0:
                # Still holding the job slot: with one slot, the next batch starts only after
                # this one's completion work (its state checkpoint) is done.
                await self._complete(job_set)
        finally:
            self._slots.release()

    async def _run_until_done(self, job_set: JobSet, job: Job, op: OutputOperationInfo) -> bool:
        """Run ``job`` (again and again under the retry policy); False if the batch failed."""
        attempt = 0
        while True:
            attempt += 1
            op.start_time = self._clock.now()
            op.end_time = op.failure_reason = None
            self._bus.post(OutputOperationStarted(op))
            try:
                with counting_for(op.tasks):
                    await job.run()
            except Exception as exc:  # reported with batch time and operator
                error = JobFailedError(job_set.info.batch_time, job.name, exc)
                op.failure_reason = str(exc)
                op.end_time = self._clock.now()
                self.output_failures += 1
                retry_in = self._retry_delay(attempt) if self._retry else None
                self._bus.post(OutputOperationFailed(op, str(error), attempt, retry_in))
                self._bus.post(OutputOperationCompleted(op))
                if retry_in is None:
                    self._fail(job_set, error)
                    return False
                log.warning("%s (attempt %d); retrying in %g s", error, attempt, retry_in)
                await self._clock.sleep_until(self._clock.now() + retry_in)
                continue
            op.end_time = self._clock.now()
            self._bus.post(OutputOperationCompleted(op))
            return True

    def _retry_delay(self, attempt: int) -> float:
        return float(min(self._backoff * 2 ** (attempt - 1), self._max_backoff))

    def _fail(self, job_set: JobSet, error: StreamingError) -> None:
        self._failed[job_set.time_ms] = error
        self._on_batch_failed(error)
        self._wake()

    def fail_batch(self, time_ms: int, error: StreamingError) -> None:
        """Batch ``time_ms`` failed before it reached the scheduler (building its jobs):
        no later batch may complete either."""
        self._tail = anyio.Event()  # never set: it stands for the failed batch
        self._failed[time_ms] = error
        self._on_batch_failed(error)
        self._wake()

    async def _complete(self, job_set: JobSet) -> None:
        if job_set.previous is not None:
            await job_set.previous.wait()  # batches complete in order
        job_set.info.processing_end_time = self._clock.now()
        try:
            await self._on_batch_completed(job_set.time_ms)
        except StreamingError as error:  # its checkpoint could not be written
            self._fail(job_set, error)
            return
        self.history.append(job_set.info)
        self._completed.append(job_set.time_ms)
        self.pending -= 1
        self.last_completed_ms = max(self.last_completed_ms or job_set.time_ms, job_set.time_ms)
        for observe in self.batch_observers:
            observe(job_set.info)
        self._bus.post(BatchCompleted(job_set.info))
        job_set.done.set()
        self._wake()

    def _wake(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def stopped(self) -> None:
        """The engine stopped: waiters for batches that will never complete are told."""
        self._stopped = True
        self._wake()

    async def wait_for_batch(self, time_ms: int) -> BatchInfo:
        """Wait until the batch at ``time_ms`` has completed; returns its BatchInfo. Raises
        the batch's error if it failed, ``ContextStateError`` if the engine stopped first."""
        while time_ms not in self._completed:
            if time_ms in self._failed:
                raise self._failed[time_ms]
            if self._stopped:
                raise ContextStateError(
                    f"the context stopped before batch {time_ms / 1000:g} s completed"
                )
            await self._progress.wait()
        return next(i for i in reversed(self.history) if round(i.batch_time * 1000) == time_ms)
