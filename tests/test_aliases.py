"""PySpark's names from the one alias table: camelCase methods, PySpark's keyword names on
them and on the methods whose name PySpark shares, and the declarations type checkers see."""

from __future__ import annotations

import inspect
import subprocess
import sys
from operator import add, sub
from pathlib import Path
from typing import Any

import pytest

import aiostream_engine
from aiostream_engine import DStream, ManualClock, StreamingContext
from aiostream_engine.aliases import ALIASES, camel_case, keyword_names
from aiostream_engine.testing import advance_batches, collect_batches, run_stream

ROOT = Path(__file__).resolve().parent.parent

#: PySpark's own parameter names (pyspark 3.5 / 4.x), as a porting user writes them.
PYSPARK_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "DStream": {
        "map": ["f", "preservesPartitioning"],
        "flatMap": ["f", "preservesPartitioning"],
        "mapPartitions": ["f", "preservesPartitioning"],
        "mapPartitionsWithIndex": ["f", "preservesPartitioning"],
        "filter": ["f"],
        "reduce": ["func"],
        "reduceByKey": ["func", "numPartitions"],
        "combineByKey": ["createCombiner", "mergeValue", "mergeCombiners", "numPartitions"],
        "partitionBy": ["numPartitions", "partitionFunc"],
        "foreachRDD": ["func"],
        "mapValues": ["f"],
        "flatMapValues": ["f"],
        "persist": ["storageLevel"],
        "checkpoint": ["interval"],
        "groupByKey": ["numPartitions"],
        "saveAsTextFiles": ["prefix", "suffix"],
        "transform": ["func"],
        "transformWith": ["func", "other", "keepSerializer"],
        "repartition": ["numPartitions"],
        "union": ["other"],
        "cogroup": ["other", "numPartitions"],
        "join": ["other", "numPartitions"],
        "leftOuterJoin": ["other", "numPartitions"],
        "rightOuterJoin": ["other", "numPartitions"],
        "fullOuterJoin": ["other", "numPartitions"],
        "slice": ["begin", "end"],
        "window": ["windowDuration", "slideDuration"],
        "reduceByWindow": ["reduceFunc", "invReduceFunc", "windowDuration", "slideDuration"],
        "countByWindow": ["windowDuration", "slideDuration"],
        "countByValueAndWindow": ["windowDuration", "slideDuration", "numPartitions"],
        "groupByKeyAndWindow": ["windowDuration", "slideDuration", "numPartitions"],
        "reduceByKeyAndWindow": [
            "func", "invFunc", "windowDuration", "slideDuration", "numPartitions", "filterFunc"
        ],
        "updateStateByKey": ["updateFunc", "numPartitions", "initialRDD"],
    },
    "RDD": {
        "map": ["f", "preservesPartitioning"],
        "flatMap": ["f", "preservesPartitioning"],
        "reduceByKey": ["func", "numPartitions", "partitionFunc"],
        "combineByKey": [
            "createCombiner", "mergeValue", "mergeCombiners", "numPartitions", "partitionFunc"
        ],
        "foldByKey": ["zeroValue", "func", "numPartitions", "partitionFunc"],
        "aggregateByKey": ["zeroValue", "seqFunc", "combFunc", "numPartitions", "partitionFunc"],
        "groupByKey": ["numPartitions", "partitionFunc"],
        "groupBy": ["f", "numPartitions", "partitionFunc"],
        "sortByKey": ["ascending", "numPartitions", "keyfunc"],
        "sortBy": ["keyfunc", "ascending", "numPartitions"],
        "distinct": ["numPartitions"],
        "coalesce": ["numPartitions", "shuffle"],
        "persist": ["storageLevel"],
        "unpersist": ["blocking"],
        "fold": ["zeroValue", "op"],
        "takeOrdered": ["num", "key"],
        "top": ["num", "key"],
        "subtractByKey": ["other", "numPartitions"],
    },
    "StreamingContext": {
        "queueStream": ["rdds", "oneAtATime", "default"],
        "socketTextStream": ["hostname", "port", "storageLevel"],
        "textFileStream": ["directory"],
        "awaitTermination": ["timeout"],
        "awaitTerminationOrTimeout": ["timeout"],
        "stop": ["stopSparkContext", "stopGraceFully"],
        "remember": ["duration"],
        "checkpoint": ["directory"],
        "transform": ["dstreams", "transformFunc"],
        "addStreamingListener": ["streamingListener"],
        "getOrCreate": ["checkpointPath", "setupFunc"],
    },
    "TaskRunner": {"parallelize": ["c", "numSlices"], "emptyRDD": []},
}

CLASSES = {cls.__name__: cls for cls in aiostream_engine._PYSPARK_NAMED}


def _snake(cls: type, camel: str) -> str:
    return next(
        (n for n in ALIASES[cls.__name__] if camel_case(n) == camel),
        camel,  # a name PySpark shares (map, window, stop)
    )


@pytest.mark.parametrize(
    ("cls_name", "method", "keywords"),
    [(c, m, k) for c, methods in PYSPARK_KEYWORDS.items() for m, k in methods.items()],
)
def test_every_pyspark_keyword_name_reaches_a_parameter(
    cls_name: str, method: str, keywords: list[str]
) -> None:
    cls = CLASSES[cls_name]
    assert hasattr(cls, method), f"{cls_name}.{method} is missing"
    snake = _snake(cls, method)
    function = inspect.unwrap(getattr(cls, snake))
    parameters = set(inspect.signature(function).parameters)
    translated = keyword_names(cls_name, snake, function)
    for keyword in keywords:
        assert translated.get(keyword, keyword) in parameters, f"{cls_name}.{method}({keyword}=)"


def test_every_table_entry_has_its_pyspark_name() -> None:
    for cls in aiostream_engine._PYSPARK_NAMED:
        for name in ALIASES[cls.__name__]:
            assert hasattr(cls, camel_case(name)), f"{cls.__name__}.{camel_case(name)}"


def test_the_declarations_for_type_checkers_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "aliases.py")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- keyword names at work ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_reduce_by_key_and_window_takes_pysparks_keywords(tmp_path: Path) -> None:
    batches = [[("a", 1)], [("a", 1), ("b", 1)], [], [("b", 1)], [], []]

    def camel(s: DStream) -> DStream:
        return s.reduceByKeyAndWindow(
            func=add, invFunc=sub, windowDuration=2, slideDuration=1, numPartitions=2,
            filterFunc=lambda kv: kv[1] > 0,
        )

    def snake(s: DStream) -> DStream:
        return s.reduce_by_key_and_window(
            add, sub, 2, 1, num_partitions=2, filter_func=lambda kv: kv[1] > 0
        )

    got = await run_stream(camel, batches, checkpoint_dir=str(tmp_path / "camel"))
    expected = await run_stream(snake, batches, checkpoint_dir=str(tmp_path / "snake"))
    assert [sorted(b) for b in got] == [sorted(b) for b in expected] == [
        [("a", 1)], [("a", 2), ("b", 1)], [("a", 1), ("b", 1)], [("b", 1)], [("b", 1)], []
    ]


@pytest.mark.anyio
async def test_update_state_by_key_and_windows_take_pysparks_keywords(tmp_path: Path) -> None:
    def total(values: list[int], state: int | None) -> int:
        return sum(values) + (state or 0)

    out = await run_stream(
        lambda s: s.updateStateByKey(updateFunc=total, numPartitions=1, initialRDD=[("a", 10)]),
        [[("a", 1)], [("b", 2)]],
        checkpoint_dir=str(tmp_path),
    )
    assert [sorted(b) for b in out] == [[("a", 11)], [("a", 11), ("b", 2)]]
    windowed = await run_stream(
        lambda s: s.window(windowDuration=2, slideDuration=1).map(
            lambda x: x * 10, preservesPartitioning=True
        ),
        [[1], [2], [3]],
    )
    assert [sorted(b) for b in windowed] == [[10], [10, 20], [20, 30]]
    by_window = await run_stream(
        lambda s: s.reduceByWindow(reduceFunc=add, invReduceFunc=sub, windowDuration=2,
                                   slideDuration=1),
        [[1], [2], [3]],
        checkpoint_dir=str(tmp_path / "w"),
    )
    assert by_window == [[1], [3], [5]]


@pytest.mark.anyio
async def test_queue_stream_and_stop_take_pysparks_keywords() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        stream = ssc.queueStream(rdds=[[1], [2]], oneAtATime=False, default=[0])
        out = collect_batches(stream)
        await ssc.start()
        await advance_batches(ssc, 2)
        await ssc.stop(stopSparkContext=False, stopGraceFully=True)
    assert [sorted(r) for _, r in out] == [[1, 2], [0]]


def test_rdd_methods_take_pysparks_keywords() -> None:
    async def run() -> None:
        async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
            sc = ssc.spark_context
            pairs = sc.parallelize(c=[("b", 2), ("a", 1), ("b", 3)], numSlices=2)
            assert sorted(await pairs.reduceByKey(func=add, numPartitions=1).acollect()) == [
                ("a", 1), ("b", 5)
            ]
            ordered = pairs.sortByKey(ascending=False, numPartitions=1, keyfunc=str.upper)
            assert [k for k, _ in await ordered.acollect()] == ["b", "b", "a"]
            assert await pairs.map(lambda kv: kv[1]).afold(0, add) == 6
            assert sorted(await pairs.foldByKey(zeroValue=0, func=add).acollect()) == [
                ("a", 1), ("b", 5)
            ]

    import anyio

    anyio.run(run)


def test_an_unknown_keyword_still_fails_naming_it() -> None:
    ssc = StreamingContext(1.0, master="local")
    stream = ssc.queueStream([[1]])
    with pytest.raises(TypeError, match="windowLength"):
        stream.window(windowLength=2)


def test_an_alias_reaches_a_subclass_override() -> None:
    class Counting(DStream):
        calls: list[Any] = []

        def flat_map(self, f: Any, preserves_partitioning: bool = False) -> DStream:
            Counting.calls.append(preserves_partitioning)
            return super().flat_map(f, preserves_partitioning)

    ssc = StreamingContext(1.0, master="local")
    stream = Counting(ssc, [], "counting")
    stream.flatMap(str.split, preservesPartitioning=True)
    assert Counting.calls == [True]
