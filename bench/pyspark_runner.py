"""PySpark 4.3.0 DStreams on local[2] under the same method (run as a subprocess).

One SparkContext (one JVM) serves every size of a job; each size gets a fresh
StreamingContext over it, fed by ``queueStream`` of one RDD built with ``parallelize``
before start. Processing time is the StreamingListener's ``processingDelay``. Workers run
this venv's Python, so they parse with orjson as well.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from typing import Any

from .child import child_main
from .engine_runner import SPARE_BATCHES, size_timeout
from .method import BatchTracker, Job, SizeResult, run_job
from .workloads import build_pipeline


def pyspark_version() -> str | None:
    try:
        import pyspark
    except ImportError:
        return None
    return str(pyspark.__version__)


def _make_listener(tracker: BatchTracker) -> Any:
    from pyspark.streaming.listener import StreamingListener

    class Listener(StreamingListener):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.first_completed: float | None = None
            self.done = threading.Event()

        def onBatchCompleted(self, batchCompleted: Any) -> None:  # noqa: N802, N803
            if self.first_completed is None:
                self.first_completed = time.perf_counter()
            delay_ms = batchCompleted.batchInfo().processingDelay()  # ms, Java-friendly long
            if tracker.add(delay_ms / 1000.0):
                self.done.set()

    return Listener()


def _collect(rdd: Any) -> None:
    rdd.collect()


class PySparkSession:
    def __init__(self, master: str) -> None:
        self.master = master
        self._sc: Any = None
        self._created_at: float | None = None  # perf_counter before the JVM started

    def available(self, workload: str) -> str | None:
        if pyspark_version() is None:
            return "pyspark is not installed (pip install -e '.[bench]')"
        return None

    def _context(self) -> Any:
        if self._sc is None:
            from pyspark import SparkConf, SparkContext

            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            self._created_at = time.perf_counter()
            conf = (
                SparkConf()
                .setMaster(self.master)
                .setAppName("aiostream-bench")
                .set("spark.ui.enabled", "false")
                .set("spark.ui.showConsoleProgress", "false")
            )
            self._sc = SparkContext(conf=conf)
            self._sc.setLogLevel("ERROR")
        return self._sc

    def run_size(self, job: Job, lines: list[str], size: int) -> SizeResult:
        from pyspark.streaming import StreamingContext

        plan = job.plan
        tracker = BatchTracker(plan, job.workload)
        listener = _make_listener(tracker)
        wall_start, t0 = time.time(), time.perf_counter()
        sc = self._context()
        if self._created_at is not None:  # the first size pays for the JVM: count it
            t0, self._created_at = self._created_at, None
        with tempfile.TemporaryDirectory(prefix="bench-spark-ckpt-") as checkpoint_dir:
            ssc = StreamingContext(sc, plan.interval)  # type: ignore[arg-type]  # takes floats
            if job.workload == "W3":
                ssc.checkpoint(checkpoint_dir)
            rdd = sc.parallelize(lines, sc.defaultParallelism)
            batches = plan.batches_for(job.workload) + SPARE_BATCHES
            stream = ssc.queueStream([rdd] * batches)
            output = build_pipeline(job.workload, stream, plan.interval, plan.window_batches)
            output.foreachRDD(_collect)
            ssc.addStreamingListener(listener)
            ssc.start()
            started = time.perf_counter() - t0
            finished = listener.done.wait(size_timeout(job))
            ssc.stop(stopSparkContext=False, stopGraceFully=False)
        first = listener.first_completed
        return SizeResult.from_tracker(
            size,
            tracker,
            timed_out=not finished,
            startup_s=None if first is None else first - t0,
            wall=(wall_start, time.time()),
            extra={"start_call_s": started},
        )

    def close(self) -> None:
        if self._sc is not None:
            self._sc.stop()


def main() -> None:
    child_main(lambda job: run_job(job, PySparkSession(job.master)))


if __name__ == "__main__":
    main()
