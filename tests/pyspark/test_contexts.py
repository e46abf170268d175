"""SparkContext, SparkConf, StorageLevel and StreamingContext of the PySpark layer: the
import paths, a SparkContext on its own before, with and after a StreamingContext, and the
PySpark-style lifecycle."""

from __future__ import annotations

import gzip
import logging
from datetime import datetime
from operator import add
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import ContextStateError, JobFailedError
from aiostream_engine.pyspark import RDD, SparkConf, SparkContext, StorageLevel
from aiostream_engine.pyspark.streaming import DStream, StreamingContext, StreamingListener
from tests.pyspark.helpers import run_until


def test_import_paths_mirror_pyspark() -> None:
    import aiostream_engine.pyspark.conf as conf
    import aiostream_engine.pyspark.context as context
    import aiostream_engine.pyspark.rdd as rdd
    import aiostream_engine.pyspark.storagelevel as storagelevel
    import aiostream_engine.pyspark.streaming.context as streaming_context
    import aiostream_engine.pyspark.streaming.dstream as dstream
    import aiostream_engine.pyspark.streaming.listener as listener

    assert (conf.SparkConf, context.SparkContext, rdd.RDD, storagelevel.StorageLevel) == (
        SparkConf, SparkContext, RDD, StorageLevel
    )
    assert (streaming_context.StreamingContext, dstream.DStream, listener.StreamingListener) == (
        StreamingContext, DStream, StreamingListener
    )


# ---- SparkConf ----------------------------------------------------------------------------------


def test_spark_conf_keeps_every_key_and_configures_the_engine_with_those_it_knows() -> None:
    conf = (
        SparkConf().setMaster("local[2]").setAppName("job")
        .set("spark.streaming.blockInterval", "50ms")
        .set("spark.default.parallelism", 3)
        .set("spark.executor.memory", "4g")
        .setAll([("spark.task.maxFailures", "2")])
    )
    conf.setIfMissing("spark.app.name", "other")
    assert conf.get("spark.app.name") == "job"
    assert conf.get("spark.executor.memory") == "4g" and conf.contains("spark.executor.memory")
    assert conf.get("spark.nope") is None and conf.get("spark.nope", "x") == "x"
    assert ("spark.default.parallelism", "3") in conf.getAll()
    assert "spark.master=local[2]" in conf.toDebugString().splitlines()
    engine = conf.streaming_conf()
    assert engine.block_interval == pytest.approx(0.05)
    assert (engine.default_parallelism, engine.task_max_failures, engine.app_name) == (3, 2, "job")
    assert engine.explicit_keys >= {"block_interval", "default_parallelism", "task_max_failures"}


def test_storage_levels_are_accepted_by_persist(sc: SparkContext) -> None:
    assert StorageLevel.MEMORY_AND_DISK == StorageLevel(True, True, False, False)
    assert StorageLevel.MEMORY_ONLY_2.replication == 2
    assert str(StorageLevel.MEMORY_ONLY) == "Memory Serialized 1x Replicated"
    rdd = sc.parallelize([1, 2, 3]).persist(StorageLevel.MEMORY_AND_DISK)
    assert rdd.is_cached and rdd.collect() == [1, 2, 3]


# ---- SparkContext on its own ---------------------------------------------------------------------


def test_spark_context_runs_rdd_actions_on_its_own(sc: SparkContext) -> None:
    assert sc.master == "local" and sc.appName == "tests"
    assert sc.parallelize(range(10), 3).map(lambda x: x * x).filter(lambda x: x % 2).collect() == [
        1, 9, 25, 49, 81
    ]
    assert sc.parallelize(range(10), 3).getNumPartitions() == 3
    assert sc.emptyRDD().collect() == [] and sc.emptyRDD().count() == 0
    assert sc.range(5).collect() == [0, 1, 2, 3, 4] and sc.range(2, 8, 3).collect() == [2, 5]
    assert sc.union([sc.parallelize([1]), sc.parallelize([2, 3])]).collect() == [1, 2, 3]
    assert sc.defaultParallelism == 1 and sc.defaultMinPartitions == 1
    assert sc.getConf().get("spark.app.name") == "tests"


def test_only_one_spark_context_at_a_time_and_get_or_create_returns_it() -> None:
    sc = SparkContext(conf=SparkConf().setMaster("local").setAppName("one"))
    try:
        with pytest.raises(ValueError, match="Cannot run multiple SparkContexts at once"):
            SparkContext("local", "two")
        assert SparkContext.getOrCreate() is sc
    finally:
        sc.stop()
    fresh = SparkContext.getOrCreate(SparkConf().setMaster("local").setAppName("fresh"))
    assert fresh is not sc and fresh.appName == "fresh"
    fresh.stop()


def test_a_stopped_spark_context_refuses_work_and_stops_once() -> None:
    with SparkContext("local", "stopping") as sc:
        rdd = sc.parallelize([1, 2])
    sc.stop()  # a second stop does nothing
    with pytest.raises(ContextStateError):
        sc.parallelize([1])
    with pytest.raises(ContextStateError):
        rdd.collect()
    with pytest.raises(ContextStateError):
        StreamingContext(sc, 1)


def test_spark_context_on_a_process_pool_runs_actions_before_any_stream() -> None:
    sc = SparkContext("local[2]", "pool")
    try:
        assert sorted(sc.parallelize(range(100), 4).map(lambda x: x % 7).distinct().collect()) == list(
            range(7)
        )
        assert sc.defaultParallelism == 2
    finally:
        sc.stop()


def test_text_file_reads_files_globs_directories_and_gzip(sc: SparkContext, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three\r\nfour")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("no\n")
    logs = tmp_path / "logs"
    logs.mkdir()
    with gzip.open(logs / "c.txt.gz", "wt") as out:
        out.write("five\nsix\n")
    assert sc.textFile(str(tmp_path / "a.txt")).collect() == ["one", "two"]
    assert sc.textFile(str(tmp_path / "*.txt")).collect() == ["one", "two", "three", "four"]
    assert sc.textFile(str(tmp_path)).collect() == ["one", "two", "three", "four"]
    assert sc.textFile(str(logs)).collect() == ["five", "six"]
    both = sc.textFile(f"{tmp_path / 'b.txt'},{logs / '*.gz'}")
    assert both.collect() == ["three", "four", "five", "six"] and both.getNumPartitions() == 2
    with pytest.raises(FileNotFoundError, match="Input path does not exist"):
        sc.textFile(str(tmp_path / "missing*.txt"))


def test_set_log_level_uses_sparks_names(sc: SparkContext) -> None:
    logger = logging.getLogger("aiostream_engine")
    previous = logger.level
    try:
        sc.setLogLevel("WARN")
        assert logger.level == logging.WARNING
        sc.setLogLevel("debug")
        assert logger.level == logging.DEBUG
        with pytest.raises(ValueError, match="did not match one of"):
            sc.setLogLevel("LOUD")
    finally:
        logger.setLevel(previous)


def test_set_checkpoint_dir_creates_it(sc: SparkContext, tmp_path: Path) -> None:
    sc.setCheckpointDir(str(tmp_path / "rdd-checkpoints"))
    assert (tmp_path / "rdd-checkpoints").is_dir()
    assert sc.getCheckpointDir() == str(tmp_path / "rdd-checkpoints")


# ---- StreamingContext(sparkContext, batchDuration) ------------------------------------------------


def test_word_count_on_a_spark_context_then_the_spark_context_goes_on(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    assert ssc.sparkContext is sc and ssc.batch_interval == 0.1
    queue = [sc.parallelize(["a b a"]), sc.parallelize(["b c"])]  # RDDs made before start
    seen: list[tuple[Any, list[Any]]] = []
    counts = ssc.queueStream(queue).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    counts.foreachRDD(lambda t, rdd: seen.append((t, sorted(rdd.collect()))))
    run_until(ssc, lambda: len(seen) >= 2)
    assert [records for _, records in seen[:2]] == [[("a", 2), ("b", 1)], [("b", 1), ("c", 1)]]
    assert all(isinstance(t, datetime) for t, _ in seen)
    assert (seen[1][0] - seen[0][0]).total_seconds() == pytest.approx(0.1)
    assert StreamingContext.getActive() is None
    assert sc.parallelize([1, 2, 3]).sum() == 6  # stopSparkContext=False: sc still works
    second = StreamingContext(sc, 0.1)  # and carries another streaming context
    more: list[list[int]] = []
    second.queueStream([[1, 2]]).foreachRDD(lambda rdd: more.append(rdd.collect()))
    run_until(second, lambda: len(more) >= 1)
    assert more[0] == [1, 2]


def test_dstream_context_is_pysparks_method_and_the_engines_property(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 1)
    stream = ssc.queueStream([[1]]).map(str)
    assert stream.context() is ssc and stream.context is ssc


def test_stop_stops_the_spark_context_by_default(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    ssc.queueStream([[1]]).pprint()
    ssc.start()
    assert StreamingContext.getActive() is ssc
    ssc.stop()
    assert ssc.awaitTermination(0) is True
    with pytest.raises(ContextStateError):
        sc.parallelize([1])
    ssc.stop()  # nothing left to do


def test_only_one_streaming_context_may_be_active(sc: SparkContext) -> None:
    first = StreamingContext(sc, 0.1)
    first.queueStream([[1]]).pprint()
    second = StreamingContext(sc, 0.1)
    second.queueStream([[1]]).pprint()
    first.start()
    try:
        with pytest.raises(ValueError, match="Only one StreamingContext"):
            second.start()
        assert StreamingContext.getActiveOrCreate(None, lambda: second) is first
    finally:
        first.stop(stopSparkContext=False)
    assert StreamingContext.getActiveOrCreate(None, lambda: second) is second


def test_pyspark_await_termination_raises_a_failed_job_every_time(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    ssc.queueStream([[0]], default=[0]).map(lambda x: 1 // x).foreachRDD(lambda rdd: rdd.count())
    with pytest.raises(ContextStateError, match="not been started"):
        ssc.awaitTermination(0.01)
    ssc.start()
    with pytest.raises(JobFailedError, match="ZeroDivisionError"):
        ssc.awaitTermination(20)
    with pytest.raises(JobFailedError, match="ZeroDivisionError"):  # again, as Spark does
        ssc.awaitTerminationOrTimeout(0)
    ssc.stop(stopSparkContext=False)  # already raised: stop does not raise it again


def test_pyspark_await_termination_returns_plain_bools(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    ssc.queueStream([[1]]).pprint()
    ssc.start()
    assert ssc.awaitTerminationOrTimeout(0.01) is False
    ssc.stop(stopSparkContext=False)
    assert ssc.awaitTermination(0) is True and ssc.awaitTerminationOrTimeout(0) is True


def test_a_batch_time_passed_to_transform_and_slice_is_a_datetime(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    ssc.remember(5)
    stream = ssc.queueStream([[1], [2], [3]])
    times: list[Any] = []
    doubled = stream.transform(lambda t, rdd: (times.append(t), rdd.map(lambda x: 2 * x))[1])
    out: list[tuple[datetime, list[int]]] = []
    doubled.foreachRDD(lambda t, rdd: out.append((t, rdd.collect())))
    run_until(ssc, lambda: len(out) >= 3)
    assert [records for _, records in out[:3]] == [[2], [4], [6]]
    assert times[:3] == [t for t, _ in out[:3]] and isinstance(times[0], datetime)
    sliced = doubled.slice(out[0][0], out[1][0])
    assert [rdd.collect() for rdd in sliced] == [[2], [4]]


def test_stateful_streams_checkpoint_into_the_spark_contexts_directory(
    sc: SparkContext, tmp_path: Path
) -> None:
    """As in Spark (and PySpark's own test base class): ``sc.setCheckpointDir`` alone lets
    stateful streams run; each StreamingContext gets a directory of its own under it."""
    sc.setCheckpointDir(str(tmp_path))
    runs: list[list[list[tuple[str, list[int]]]]] = []
    for _ in range(2):
        ssc = StreamingContext(sc, 0.1)
        state = ssc.queueStream([[("k", i)] for i in range(3)]).updateStateByKey(
            lambda values, state: (state or []) + values
        )
        out: list[list[tuple[str, list[int]]]] = []
        state.foreachRDD(lambda rdd, out=out: out.append(rdd.collect()))
        run_until(ssc, lambda out=out: len(out) >= 3)
        runs.append(out[:3])
    expected = [[("k", [0])], [("k", [0, 1])], [("k", [0, 1, 2])]]
    assert runs == [expected, expected]  # the second context did not resume the first
    assert len([d for d in tmp_path.iterdir() if d.name.startswith("streaming-")]) == 2


def test_without_any_checkpoint_directory_a_stateful_stream_is_refused(sc: SparkContext) -> None:
    ssc = StreamingContext(sc, 0.1)
    ssc.queueStream([[("k", 1)]]).updateStateByKey(lambda v, s: s).pprint()
    with pytest.raises(ContextStateError, match="checkpoint"):
        ssc.start()
