"""StreamingContext lifecycle, scheduling, listeners and bad configuration."""

from __future__ import annotations

import operator
import subprocess
import sys
import textwrap

import anyio
import pytest

from aiostream_engine import (
    ConfigurationError,
    ContextStateError,
    JobFailedError,
    ManualClock,
    StreamingConf,
    StreamingContext,
    StreamingListener,
)
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("interval", [0, -1.0])
def test_batch_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ConfigurationError, match="batch_interval must be > 0"):
        StreamingContext(interval, master="local")


def test_block_interval_larger_than_batch_interval_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="block_interval .* larger than the batch"):
        StreamingContext(0.5, master="local", conf={"spark.streaming.blockInterval": "1s"})


def test_unknown_master_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown master"):
        StreamingContext(1.0, master="yarn")


async def test_start_without_output_operation_is_refused() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.queue_stream([[1]])
        with pytest.raises(ContextStateError, match="no output operations"):
            await ssc.start()


async def test_first_batch_is_next_multiple_of_interval_after_start() -> None:
    clock = ManualClock(12.3)
    async with StreamingContext(2.0, master="local", clock=clock) as ssc:
        out = collect_batches(ssc.queue_stream([[1], [2]]))
        await ssc.start()
        await advance_batches(ssc, 2)
    assert [t for t, _ in out] == [14.0, 16.0]


async def test_no_new_streams_after_start() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        stream = ssc.queue_stream([[1]])
        stream.pprint()
        await ssc.start()
        with pytest.raises(ContextStateError, match="cannot be added once the context has started"):
            stream.map(str)


async def test_batch_info_and_listener_events_in_order() -> None:
    events: list[tuple[str, float]] = []

    class Recorder(StreamingListener):
        def on_batch_submitted(self, event):  # type: ignore[no-untyped-def]
            events.append(("submitted", event.batch_info.batch_time))

        async def on_batch_started(self, event):  # type: ignore[no-untyped-def]
            events.append(("started", event.batch_info.batch_time))

        def onBatchCompleted(self, event):  # type: ignore[no-untyped-def]  # noqa: N802 PySpark style
            events.append(("completed", event.batch_info.batch_time))

    clock = ManualClock()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        ssc.add_streaming_listener(Recorder())
        ssc.queue_stream([[1, 2, 3], [4]]).count().foreach_rdd(lambda rdd: None)
        await ssc.start()
        infos = await advance_batches(ssc, 2)
        await ssc.stop(graceful=True)
    assert [i.batch_time for i in infos] == [1.0, 2.0]
    assert [i.num_records for i in infos] == [3, 1]
    assert all(i.scheduling_delay == 0 and i.processing_delay == 0 for i in infos)
    assert [i.batch_time for i in ssc.batch_history] == [1.0, 2.0]
    assert events == [
        ("submitted", 1.0), ("started", 1.0), ("completed", 1.0),
        ("submitted", 2.0), ("started", 2.0), ("completed", 2.0),
    ]


async def test_failed_job_names_operator_and_batch_and_stops_the_context() -> None:
    """The default output_failure_policy: a failed batch is never completed or skipped;
    the context stops with its error (batch 2 never runs)."""
    clock = ManualClock()
    seen: list[list[int]] = []
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        stream = ssc.queue_stream([[1, 0], [2]]).map(lambda x: 10 // x)

        async def keep(rdd):  # type: ignore[no-untyped-def]
            seen.append(await rdd.acollect())

        stream.foreach_rdd(keep)
        await ssc.start()
        with pytest.raises(JobFailedError):
            await advance_batches(ssc, 2)
        with pytest.raises(JobFailedError) as failure:
            await ssc.await_termination(timeout=1)
        assert ssc.state.value == "stopped"
    message = str(failure.value)
    assert "batch 1" in message and "map raised ZeroDivisionError" in message
    assert "4 time(s)" in message
    assert seen == []
    assert ssc.batch_history == []


async def test_graceful_stop_finishes_every_generated_batch() -> None:
    clock = ManualClock()
    done: list[float] = []
    release = anyio.Event()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:

        async def slow(time, rdd):  # type: ignore[no-untyped-def]
            await release.wait()
            done.append(time)

        ssc.queue_stream([[1], [2], [3]]).foreach_rdd(slow)
        await ssc.start()
        for t in (1.0, 2.0, 3.0):
            clock.set_time(t)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: ssc.stop(graceful=True))
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert done == [1.0, 2.0, 3.0]


async def test_await_termination_times_out_while_running() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        ssc.queue_stream([[1]]).pprint()
        await ssc.start()
        assert await ssc.await_termination(timeout=0.01) is False
        await ssc.stop()
        assert await ssc.await_termination(timeout=0.01) is True


async def test_async_use_without_async_with_is_refused() -> None:
    ssc = StreamingContext(1.0, master="local", clock=ManualClock())
    ssc.queue_stream([[1]]).pprint()
    with pytest.raises(ContextStateError, match="async with"):
        await ssc.start()


def test_blocking_pyspark_style_script_runs_without_event_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No main guard, camelCase, blocking calls: the loop runs on a background thread."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import operator
        from aiostream_engine import StreamingContext
        ssc = StreamingContext(0.2, master="local[2]")
        words = ssc.queueStream([["a b a"], ["b"]])
        counts = words.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(operator.add)
        seen = []
        def keep(time, rdd):
            seen.append(sorted(rdd.collect()))   # blocking action on a worker thread
        counts.foreachRDD(keep)
        ssc.start()
        ssc.awaitTermination(1.0)
        ssc.stop(stopGraceFully=True)
        print(seen[:2])
    """))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[[('a', 2), ('b', 1)], [('b', 1)]]"


def test_conf_accepts_spark_keys_and_documents_every_key() -> None:
    conf = StreamingConf.of({"spark.streaming.blockInterval": "50ms", "spark.task.maxFailures": "2"})
    assert conf.block_interval == pytest.approx(0.05)
    assert conf.task_max_failures == 2
    assert conf.get("spark.streaming.concurrentJobs") == 1
    rows = list(StreamingConf.describe())
    assert {r[0] for r in rows} == set(StreamingConf.keys())
    assert all(r[3] for r in rows)
    with pytest.raises(ConfigurationError, match="unknown configuration key"):
        conf.set("spark.nope", 1)
    with pytest.raises(ConfigurationError, match="task_max_failures must be >= 1"):
        conf.set("task_max_failures", 0)


async def test_union_and_transform_across_streams() -> None:
    clock = ManualClock()
    async with StreamingContext(1.0, master="local", clock=clock) as ssc:
        a = ssc.queue_stream([[("k", 1)], [("k", 2)]])
        b = ssc.queue_stream([[("k", 10)], [("j", 20)]])
        unioned = collect_batches(ssc.union(a, b).reduce_by_key(operator.add))
        joined = collect_batches(ssc.transform([a, b], lambda rdds: rdds[0].join(rdds[1])))
        await ssc.start()
        await advance_batches(ssc, 2)
    assert [sorted(r) for _, r in unioned] == [[("k", 11)], [("j", 20), ("k", 2)]]
    assert [r for _, r in joined] == [[("k", (1, 10))], []]


@pytest.mark.anyio
async def test_batch_info_carries_each_input_streams_records_and_metadata() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        first = ssc.queue_stream([[1, 2, 3], [4]])
        second = ssc.queue_stream([["a"], []])
        first.union(second).count().foreach_rdd(lambda rdd: None)
        await ssc.start()
        infos = await advance_batches(ssc, 2)
        await ssc.stop()
    assert [
        {i: (s.input_stream_id, s.num_records, s.metadata) for i, s in b.stream_id_to_input_info.items()}
        for b in infos
    ] == [{0: (0, 3, {}), 1: (1, 1, {})}, {0: (0, 1, {}), 1: (1, 0, {})}]
    assert [b.num_records for b in infos] == [4, 1]
