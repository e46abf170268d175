"""PySpark-style listeners: PySpark's event objects and BatchInfo accessors, with Spark's
conventions (milliseconds, -1 for what is not known yet, queue streams report no input)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from aiostream_engine import Receiver
from aiostream_engine.pyspark import SparkContext
from aiostream_engine.pyspark.streaming import StreamingContext, StreamingListener
from tests.pyspark.helpers import run_until


class Recorder(StreamingListener):
    def __init__(self, hold_first_submitted: threading.Event | None = None) -> None:
        self.hold = hold_first_submitted
        self.submitted: list[dict[str, Any]] = []
        self.batch_started: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []
        self.outputs: list[tuple[int, str, int, int]] = []
        self.started: list[int] = []
        self.receivers: list[tuple[int, bool]] = []

    def onStreamingStarted(self, streamingStarted: Any) -> None:
        self.started.append(streamingStarted.time())

    def onReceiverStarted(self, receiverStarted: Any) -> None:
        info = receiverStarted.receiverInfo()
        self.receivers.append((info.streamId(), info.active()))

    def onBatchSubmitted(self, batchSubmitted: Any) -> None:
        if self.hold is not None:  # look at the first batch only once it has run
            self.hold.wait(10)
            self.hold = None
        self.submitted.append(self._describe(batchSubmitted.batchInfo()))

    def onBatchStarted(self, batchStarted: Any) -> None:
        self.batch_started.append(self._describe(batchStarted.batchInfo()))

    def onBatchCompleted(self, batchCompleted: Any) -> None:
        self.completed.append(self._describe(batchCompleted.batchInfo()))

    def onOutputOperationCompleted(self, outputOperationCompleted: Any) -> None:
        info = outputOperationCompleted.outputOperationInfo()
        self.outputs.append((info.id(), info.name(), info.startTime(), info.endTime()))

    @staticmethod
    def _describe(info: Any) -> dict[str, Any]:
        return {
            "time": info.batchTime().milliseconds(),
            "records": info.numRecords(),
            "inputs": {i: v.numRecords() for i, v in info.streamIdToInputInfo().items()},
            "delays": (info.schedulingDelay(), info.processingDelay(), info.totalDelay()),
            "start_end": (info.processingStartTime(), info.processingEndTime()),
            "submission": info.submissionTime(),
            "outputs": sorted(info.outputOperationInfos()),
        }


class Five(Receiver):
    async def on_start(self) -> None:
        for i in range(5):
            await self.store(i)


def test_batch_info_accessors_follow_sparks_conventions(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    first_batch_ran = threading.Event()
    recorder = Recorder(hold_first_submitted=first_batch_ran)
    ssc.addStreamingListener(recorder)
    queued = ssc.queueStream([[1, 2, 3]])
    received = ssc.receiverStream(Five())
    times: list[datetime] = []
    got: list[int] = []
    queued.foreachRDD(lambda t, rdd: (times.append(t), first_batch_ran.set()))
    received.foreachRDD(lambda rdd: got.extend(rdd.collect()))
    run_until(ssc, lambda: len(got) >= 5 and len(recorder.completed) >= 2)

    assert recorder.started and recorder.receivers == [(1, True)]
    first = recorder.submitted[0]
    assert first["time"] == round(times[0].timestamp() * 1000)
    for batch in recorder.submitted:  # as it was when submitted, however late it is seen
        assert batch["delays"] == (-1, -1, -1) and batch["start_end"] == (-1, -1)
    assert recorder.batch_started
    for batch in recorder.batch_started:
        scheduling, processing, total = batch["delays"]
        assert scheduling >= 0 and (processing, total) == (-1, -1)
        assert batch["start_end"][0] >= batch["submission"] and batch["start_end"][1] == -1
    for batch in recorder.completed:
        assert batch["outputs"] == [0, 1]
        scheduling, processing, total = batch["delays"]
        assert scheduling >= 0 and processing >= 0 and total == scheduling + processing
        assert batch["submission"] <= batch["start_end"][0] <= batch["start_end"][1]
        assert 0 not in batch["inputs"]  # the queue stream (id 0) reports no input, as in Spark
        assert batch["records"] == batch["inputs"].get(1, 0)
    assert sum(b["records"] for b in recorder.completed) == 5  # the receiver's records count
    ids = {i for i, _, _, _ in recorder.outputs}
    assert ids == {0, 1}
    assert all(end >= start >= 0 for _, _, start, end in recorder.outputs)
    assert all("foreach_rdd" in name for _, name, _, _ in recorder.outputs)


def test_a_listener_can_be_removed(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    recorder = Recorder()
    ssc.addStreamingListener(recorder)
    ssc.removeStreamingListener(recorder)
    seen: list[int] = []
    ssc.queueStream([[1]]).foreachRDD(lambda rdd: seen.extend(rdd.collect()))
    run_until(ssc, lambda: seen == [1])
    assert recorder.completed == [] and recorder.started == []


def test_a_blocking_listener_runs_off_the_event_loop_and_holds_nothing_up(sc: SparkContext) -> None:
    """PySpark calls listeners on a thread of their own: a listener that blocks (here until
    the test lets it go) must not stop the batch clock or the jobs."""
    release = threading.Event()
    threads: list[int] = []

    class Blocking(StreamingListener):
        def onBatchCompleted(self, batchCompleted: Any) -> None:
            threads.append(threading.get_ident())
            release.wait(30)

    ssc = StreamingContext(sc, 0.1)
    ssc.addStreamingListener(Blocking())
    seen: list[int] = []
    ssc.queueStream([[1], [2], [3]]).foreachRDD(lambda rdd: seen.extend(rdd.collect()))
    ssc.start()
    try:
        deadline = time.monotonic() + 5  # the listener holds its first event all along
        while seen != [1, 2, 3] and time.monotonic() < deadline:
            ssc.awaitTermination(0.05)
    finally:
        release.set()
        ssc.stop(stopSparkContext=False, stopGraceFully=True)
    assert seen == [1, 2, 3]
    loop_thread = sc._loop_thread._thread.ident
    assert threads and loop_thread not in threads and threading.get_ident() not in threads


def test_metadata_description_reads_sparks_key_and_the_kafka_streams() -> None:
    from aiostream_engine.pyspark.streaming.listener import JavaStreamInputInfo
    from aiostream_engine.scheduler.batch_info import StreamInputInfo

    def description(metadata: dict[str, Any]) -> str | None:
        return JavaStreamInputInfo(StreamInputInfo(0, 3, metadata)).metadataDescription()

    assert description({"Description": "files: a.txt"}) == "files: a.txt"
    assert description({"description": "topic: t\tpartition: 0"}) == "topic: t\tpartition: 0"
    assert description({"offsets": []}) is None
