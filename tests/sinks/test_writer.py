"""The Sink protocol and the writer behind write_to: scopes, bounds, retries, failures."""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aiostream_engine import JobFailedError, ManualClock, StreamingContext
from aiostream_engine.dstream.sink_output import SinkOutputDStream, WritePolicy, write_rdd
from aiostream_engine.rdd.core import RDD
from aiostream_engine.sinks import FileSink, Sink, SinkWriteError
from aiostream_engine.testing import advance_batches
from tests.sinks.streams import write_batches

pytestmark = pytest.mark.anyio


class JournalSink(Sink):
    """Records what the writer asks of each sink object (the object itself, kept alive, so
    copies are told apart by identity); partition ``fail`` always fails."""

    def __init__(self, journal: list[tuple[Any, ...]], fail: int | None = None) -> None:
        self.journal = journal
        self.fail = fail

    async def open(self) -> None:
        self.journal.append(("open", self))

    async def write_partition(self, batch_time: float, index: int, records: Sequence[Any]) -> None:
        self.journal.append(("write", self, batch_time, index, list(records)))
        if index == self.fail:
            raise OSError(f"partition {index} refused")

    async def close(self) -> None:
        self.journal.append(("close", self))


class PerTaskJournalSink(JournalSink):
    open_per: ClassVar = "task"


def test_retry_delays_double_from_the_backoff() -> None:
    assert WritePolicy(retries=3, backoff=0.5).delays() == [0.5, 1.0, 2.0]
    assert WritePolicy(retries=0).delays() == []
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        WritePolicy(max_concurrency=0)


def test_write_to_takes_its_defaults_from_the_conf_and_refuses_non_sinks() -> None:
    conf = {"sink_max_concurrency": 7, "sink_max_retries": 1, "sink_retry_backoff": 0.25}
    ssc = StreamingContext(1.0, master="local", conf=conf)
    stream = ssc.queue_stream([[1]])
    stream.write_to(JournalSink([]))
    stream.write_to(JournalSink([]), retries=5)
    policies = [out.writer.policy for out in ssc._outputs if isinstance(out, SinkOutputDStream)]
    assert policies == [WritePolicy(7, 1, 0.25), WritePolicy(7, 5, 0.25)]
    with pytest.raises(TypeError, match="write_to needs a Sink, got function"):
        stream.write_to(lambda time, rdd: None)  # type: ignore[arg-type]


async def test_worker_scope_opens_once_and_closes_once() -> None:
    journal: list[tuple[Any, ...]] = []
    sink = JournalSink(journal)
    async with sink:
        await write_batches(sink, [[1, 2], [3]])
    me = sink
    assert journal[0] == ("open", me)
    assert journal[-1] == ("close", me)
    assert sorted((e for e in journal if e[0] == "write"), key=lambda e: e[2:4]) == [
        ("write", me, 1.0, 0, [1]), ("write", me, 1.0, 1, [2]),
        ("write", me, 2.0, 0, [3]), ("write", me, 2.0, 1, []),
    ]
    assert len(journal) == 6


async def test_the_context_closes_its_sinks_when_it_stops() -> None:
    journal: list[tuple[Any, ...]] = []
    sink = JournalSink(journal)
    await write_batches(sink, [[1, 2]])  # no `async with sink`: stopping the context closes it
    assert [e[0] for e in journal] == ["open", "write", "write", "close"]
    assert not sink.is_open


async def test_task_scope_opens_a_copy_per_partition_write() -> None:
    journal: list[tuple[Any, ...]] = []
    sink = PerTaskJournalSink(journal)
    await write_batches(sink, [[1, 2]], max_concurrency=1)
    first, second = journal[0][1], journal[3][1]
    assert journal == [
        ("open", first), ("write", first, 1.0, 0, [1]), ("close", first),
        ("open", second), ("write", second, 1.0, 1, [2]), ("close", second),
    ]
    assert first is not second and sink not in (first, second)
    assert not sink.is_open


async def test_a_failed_partition_is_retried_then_fails_the_batch_and_starts_no_more() -> None:
    journal: list[tuple[Any, ...]] = []
    sink = JournalSink(journal, fail=0)
    with pytest.raises(JobFailedError) as failed:
        await write_batches(sink, [[1, 2, 3]], num_partitions=3, max_concurrency=1,
                            retries=2, backoff=0)
    error = failed.value.cause
    assert isinstance(error, SinkWriteError)
    assert str(error) == (
        "sink JournalSink: partition 0 of batch 1.000 failed 3 attempt(s); "
        "last error: OSError: partition 0 refused"
    )
    writes = [e[3] for e in journal if e[0] == "write"]
    assert writes == [0, 0, 0]  # three attempts of partition 0; 1 and 2 never started
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.sink, copy.batch_time, copy.partition, copy.attempts) == ("JournalSink", 1.0, 0, 3)
    await sink.aclose()


async def test_write_rdd_inside_foreach_rdd(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, format="json")

    async def output(time: float, rdd: RDD) -> None:
        await write_rdd(sink, time, rdd, WritePolicy(max_concurrency=2))

    async with sink, StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        ssc.queue_stream([ssc.spark_context.parallelize([1, 2, 3], 2)]).foreach_rdd(output)
        await ssc.start()
        await advance_batches(ssc, 1)
        await ssc.stop()
    assert sorted(os.listdir(tmp_path)) == ["batch-1000-part-00000.jsonl", "batch-1000-part-00001.jsonl"]
    assert (tmp_path / "batch-1000-part-00000.jsonl").read_text() == "1\n2\n"
    assert (tmp_path / "batch-1000-part-00001.jsonl").read_text() == "3\n"
