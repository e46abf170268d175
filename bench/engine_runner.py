"""Our engine under the method of ``bench.method`` (run as a subprocess by the suite).

Batches come from ``queue_stream`` over one RDD built with ``parallelize`` before start,
like the PySpark peer; processing time is ``BatchInfo.processing_delay``; the event-loop
lag monitor runs on the engine's own loop for the whole size run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio

from aiostream_engine import DStream, StreamingContext

from .child import child_main
from .loop_lag import LoopLagMonitor
from .method import BatchTracker, Job, SizeResult, run_job
from .workloads import build_pipeline

SPARE_BATCHES = 3  # queue items beyond what the tracker needs, so no batch runs empty


def bench_conf() -> dict[str, Any]:
    """Workers at the driver's priority, like PySpark's: the engine's default niceness (5)
    hands the CPU to any other process, which on a shared machine measures the neighbours."""
    from aiostream_engine import StreamingConf

    return {"worker_nice": 0} if "worker_nice" in StreamingConf.keys() else {}


def size_timeout(job: Job) -> float:
    return job.plan.batches_for(job.workload) * job.plan.interval * 3 + 60


async def _collect(rdd: Any) -> None:
    await rdd.acollect()


class _Listener:
    def __init__(
        self, tracker: BatchTracker, traffic: Any = None,
        on_batch: Callable[[Any], None] = lambda info: None,
    ) -> None:
        self.tracker = tracker
        self.on_batch = on_batch
        self.first_completed: float | None = None
        self.done = anyio.Event()
        self._traffic = traffic  # the backend's byte counters, where it has them
        self._last_bytes = self._bytes()
        self.batch_bytes: list[int] = []

    def _bytes(self) -> int:
        traffic = self._traffic
        return 0 if traffic is None else traffic.sent + traffic.received

    def on_batch_completed(self, event: Any) -> None:
        if self.first_completed is None:
            self.first_completed = time.perf_counter()
        now = self._bytes()
        self.batch_bytes.append(now - self._last_bytes)
        self._last_bytes = now
        self.on_batch(event.batch_info)
        if self.tracker.add(event.batch_info.processing_delay or 0.0):
            self.done.set()

    def driver_bytes(self) -> dict[str, Any]:
        """Median bytes between the driver and the workers per measured batch (pipes on
        local[N], plans, scatters and results on Dask; none on local)."""
        measured = self.batch_bytes[self.tracker.warmup :]
        if self._traffic is None or not measured:
            return {}
        return {"driver_bytes_per_batch": statistics.median(measured)}


class EngineSession:
    """Our engine; subclasses feed the batches another way (``stream``) and may measure
    more per batch (``on_batch``, ``extra``)."""

    def __init__(self, master: str) -> None:
        self.master = master

    def available(self, workload: str) -> str | None:
        if workload == "W3" and not hasattr(DStream, "reduce_by_key_and_window"):
            return "DStream.reduce_by_key_and_window does not exist yet (windows issue)"
        return None

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult:
        return anyio.run(self._run, job, lines, size, backend_options={"use_uvloop": True})

    def close(self) -> None:
        return None

    def conf(self) -> dict[str, Any]:
        return bench_conf()

    def stream(self, ssc: StreamingContext, job: Job, lines: list[str]) -> DStream:
        """The batches: a queue of one RDD ``parallelize``d before start."""
        sc = ssc.spark_context
        rdd = sc.parallelize(lines, sc.default_parallelism)
        return ssc.queue_stream([rdd] * (job.plan.batches_for(job.workload) + SPARE_BATCHES))

    def on_batch(self, info: Any) -> None:
        """Called with each completed batch's BatchInfo."""

    def extra(self, tracker: BatchTracker) -> dict[str, Any]:
        return {}

    async def _run(self, job: Job, lines: list[str], size: int) -> SizeResult:
        plan = job.plan
        lag = LoopLagMonitor()
        wall_start, t0 = time.time(), time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as checkpoint_dir:
            async with anyio.create_task_group() as tg:
                async with StreamingContext(plan.interval, master=self.master, conf=self.conf()) as ssc:
                    traffic = getattr(ssc.spark_context.backend, "traffic", None)
                    listener = _Listener(BatchTracker(plan, job.workload), traffic, self.on_batch)
                    if job.workload == "W3":
                        ssc.checkpoint(checkpoint_dir)
                    stream = self.stream(ssc, job, lines)
                    output = build_pipeline(job.workload, stream, plan.interval, plan.window_batches)
                    output.foreach_rdd(_collect)
                    ssc.add_streaming_listener(listener)
                    tg.start_soon(lag.run)
                    await ssc.start()
                    started = time.perf_counter() - t0
                    with anyio.move_on_after(size_timeout(job)) as scope:
                        await listener.done.wait()
                    await ssc.stop(graceful=False)
                tg.cancel_scope.cancel()
        first = listener.first_completed
        return SizeResult.from_tracker(
            size,
            listener.tracker,
            timed_out=scope.cancelled_caught,
            startup_s=None if first is None else first - t0,
            wall=(wall_start, time.time()),
            extra={
                **lag.summary(),
                **listener.driver_bytes(),
                **self.extra(listener.tracker),
                "start_call_s": started,
                "errors": [str(e) for e in ssc.errors][:3],
            },
        )


def main() -> None:
    child_main(lambda job: run_job(job, EngineSession(job.master)))


if __name__ == "__main__":
    main()
