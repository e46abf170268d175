"""Every stateless DStream operation against its expected per-batch outputs, on ``local``,
``local[2]`` and ``dask-local[2]``. Many cases are PySpark's own (pyspark/streaming/tests/test_dstream.py);
keyed outputs are compared as sorted lists."""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aiostream_engine import (
    DStream,
    JobFailedError,
    ManualClock,
    NotSerializableError,
    StreamingContext,
    stable_hash,
)
from aiostream_engine.rdd.core import RDD
from aiostream_engine.testing import advance_batches, collect_batches, run_stream
from tests.masters import MASTERS, resolve_master

pytestmark = pytest.mark.anyio



@pytest.fixture(params=MASTERS)
def master(request: pytest.FixtureRequest) -> str:
    return resolve_master(request, str(request.param))


def sort_each(batches: list[list[Any]]) -> list[list[Any]]:
    return [sorted(batch, key=repr) for batch in batches]


def grouped(batches: list[list[tuple[Any, Any]]]) -> list[list[tuple[Any, Any]]]:
    """Per batch: (key, sorted values) pairs, sorted by key."""
    return [sorted(((k, sorted(vs)) for k, vs in batch), key=repr) for batch in batches]


RANGES = [list(range(1, 5)), list(range(5, 9)), list(range(9, 13))]


# ---- narrow transformations ------------------------------------------------------------


async def test_map(master: str) -> None:
    out = await run_stream(lambda s: s.map(str), RANGES, master=master)
    assert out == [["1", "2", "3", "4"], ["5", "6", "7", "8"], ["9", "10", "11", "12"]]


async def test_flat_map(master: str) -> None:
    out = await run_stream(lambda s: s.flat_map(lambda x: (x, x * 2)), RANGES, master=master)
    assert out == [
        [1, 2, 2, 4, 3, 6, 4, 8],
        [5, 10, 6, 12, 7, 14, 8, 16],
        [9, 18, 10, 20, 11, 22, 12, 24],
    ]


async def test_filter(master: str) -> None:
    out = await run_stream(lambda s: s.filter(lambda x: x % 2 == 0), RANGES, master=master)
    assert out == [[2, 4], [6, 8], [10, 12]]


async def test_map_partitions(master: str) -> None:
    def f(iterator: Iterator[int]) -> Iterator[int]:
        yield sum(iterator)

    out = await run_stream(lambda s: s.map_partitions(f), RANGES, master=master, num_partitions=2)
    assert out == [[3, 7], [11, 15], [19, 23]]


async def test_map_partitions_with_index(master: str) -> None:
    out = await run_stream(
        lambda s: s.map_partitions_with_index(lambda i, it: [(i, x) for x in it]),
        [[1, 2, 3, 4], [5]],
        master=master,
        num_partitions=2,
    )
    assert out == [[(0, 1), (0, 2), (1, 3), (1, 4)], [(0, 5)]]


KEYED = [
    [("a", 2), ("b", 2), ("c", 1), ("d", 1)],
    [(0, 4), (1, 1), (2, 1), (3, 1)],
    [(1, 1), (2, 1), (3, 1), (4, 1)],
]


async def test_map_values(master: str) -> None:
    out = await run_stream(lambda s: s.map_values(lambda x: x + 10), KEYED, master=master)
    assert sort_each(out) == sort_each([
        [("a", 12), ("b", 12), ("c", 11), ("d", 11)],
        [(0, 14), (1, 11), (2, 11), (3, 11)],
        [(1, 11), (2, 11), (3, 11), (4, 11)],
    ])


async def test_flat_map_values(master: str) -> None:
    out = await run_stream(lambda s: s.flat_map_values(lambda x: (x, x + 10)), KEYED, master=master)
    assert out == [
        [("a", 2), ("a", 12), ("b", 2), ("b", 12), ("c", 1), ("c", 11), ("d", 1), ("d", 11)],
        [(0, 4), (0, 14), (1, 1), (1, 11), (2, 1), (2, 11), (3, 1), (3, 11)],
        [(1, 1), (1, 11), (2, 1), (2, 11), (3, 1), (3, 11), (4, 1), (4, 11)],
    ]


async def test_glom(master: str) -> None:
    out = await run_stream(lambda s: s.glom(), RANGES, master=master, num_partitions=2)
    assert out == [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]


async def test_key_by(master: str) -> None:
    out = await run_stream(lambda s: s.key_by(len), [["ab", "c"], [], ["xyz"]], master=master)
    assert out == [[(2, "ab"), (1, "c")], [], [(3, "xyz")]]


# ---- per-batch aggregations ----------------------------------------------------------


async def test_reduce(master: str) -> None:
    out = await run_stream(lambda s: s.reduce(operator.add), [*RANGES, []], master=master)
    assert out == [[10], [26], [42], []]  # an empty batch reduces to nothing


async def test_count(master: str) -> None:
    inputs = [list(range(5)), list(range(10)), [], list(range(20))]
    out = await run_stream(lambda s: s.count(), inputs, master=master, num_partitions=3)
    assert out == [[5], [10], [0], [20]]
    # once the queue runs out each batch is an RDD with no partitions at all: still [0]
    out = await run_stream(lambda s: s.count(), [[7, 8]], num_batches=3, master=master)
    assert out == [[2], [0], [0]]


async def test_count_by_value(master: str) -> None:
    inputs = [list(range(1, 5)) * 2, list(range(5, 7)) + list(range(5, 9)), ["a", "a", "b", ""]]
    out = await run_stream(lambda s: s.count_by_value(), inputs, master=master)
    assert sort_each(out) == sort_each([
        [(1, 2), (2, 2), (3, 2), (4, 2)],
        [(5, 2), (6, 2), (7, 1), (8, 1)],
        [("a", 2), ("b", 1), ("", 1)],
    ])


async def test_reduce_by_key(master: str) -> None:
    inputs = [
        [("a", 1), ("a", 1), ("b", 1), ("b", 1)],
        [("", 1), ("", 1), ("", 1), ("", 1)],
        [(1, 1), (1, 1), (2, 1), (2, 1), (3, 1)],
    ]
    out = await run_stream(lambda s: s.reduce_by_key(operator.add), inputs, master=master)
    assert sort_each(out) == [[("a", 2), ("b", 2)], [("", 4)], [(1, 2), (2, 2), (3, 1)]]


async def test_reduce_by_key_with_partitions(master: str) -> None:
    inputs = [[(f"k{i % 5}", i) for i in range(20)]]
    out = await run_stream(
        lambda s: s.reduce_by_key(operator.add, 3).glom(), inputs, master=master, num_partitions=2
    )
    [parts] = out
    assert len(parts) == 3
    for index, part in enumerate(parts):
        assert all(stable_hash(k) % 3 == index for k, _ in part)
    assert sorted(x for part in parts for x in part) == [
        ("k0", 30), ("k1", 34), ("k2", 38), ("k3", 42), ("k4", 46),
    ]


GROUP_INPUT = [
    [(1, 1), (2, 1), (3, 1), (4, 1)],
    [(1, 1), (1, 1), (1, 1), (2, 1), (2, 1), (3, 1)],
    [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 1), ("", 1)],
]


async def test_combine_by_key(master: str) -> None:
    def add(a: str, b: Any) -> str:
        return a + str(b)

    out = await run_stream(lambda s: s.combine_by_key(str, add, add), GROUP_INPUT, master=master)
    assert sort_each(out) == sort_each([
        [(1, "1"), (2, "1"), (3, "1"), (4, "1")],
        [(1, "111"), (2, "11"), (3, "1")],
        [("a", "11"), ("b", "1"), ("", "111")],
    ])


async def test_group_by_key(master: str) -> None:
    out = await run_stream(lambda s: s.group_by_key().map_values(list), GROUP_INPUT, master=master)
    assert grouped(out) == grouped([
        [(1, [1]), (2, [1]), (3, [1]), (4, [1])],
        [(1, [1, 1, 1]), (2, [1, 1]), (3, [1])],
        [("a", [1, 1]), ("b", [1]), ("", [1, 1, 1])],
    ])


async def test_partition_by(master: str) -> None:
    inputs = [[(k, i) for i, k in enumerate("abcdefgh")], [(n, n) for n in range(10)]]
    out = await run_stream(lambda s: s.partition_by(3).glom(), inputs, master=master)
    for batch, data in zip(out, inputs, strict=True):
        assert len(batch) == 3
        for index, part in enumerate(batch):
            assert all(stable_hash(k) % 3 == index for k, _ in part)
        assert sorted(x for part in batch for x in part) == sorted(data)


async def test_repartition(master: str) -> None:
    out = await run_stream(
        lambda s: s.repartition(1).glom(), [[1, 2, 3, 4], [5, 6, 7, 8]], master=master,
        num_partitions=2,
    )
    assert out == [[[1, 2, 3, 4]], [[5, 6, 7, 8]]]
    out = await run_stream(lambda s: s.repartition(4).glom(), [list(range(10))], master=master)
    [parts] = out
    assert len(parts) == 4
    assert sorted(x for part in parts for x in part) == list(range(10))


# ---- arbitrary RDD functions -----------------------------------------------------------


async def test_transform(master: str) -> None:
    out = await run_stream(
        lambda s: s.transform(lambda rdd: rdd.map(lambda x: x * 10).sort_by(lambda x: -x)),
        [[1, 3, 2], [5]],
        master=master,
    )
    assert out == [[30, 20, 10], [50]]


async def test_transform_with_time_gets_the_batch_time_in_seconds(master: str) -> None:
    times: list[float] = []

    def tag(time: float, rdd: RDD) -> RDD:
        times.append(time)
        return rdd.map(lambda x: (time, x))

    out = await run_stream(lambda s: s.transform(tag), [[1], [2, 3], []], master=master)
    assert times == [1.0, 2.0, 3.0]
    assert all(isinstance(t, float) for t in times)
    assert out == [[(1.0, 1)], [(2.0, 2), (2.0, 3)], []]


async def test_transform_with_half_second_batches(master: str) -> None:
    times: list[float] = []

    def record(time: float, rdd: RDD) -> RDD:
        times.append(time)
        return rdd

    await run_stream(lambda s: s.transform(record), [[1], [2], [3]], master=master, batch_interval=0.5)
    assert times == [0.5, 1.0, 1.5]


async def test_transform_with(master: str) -> None:
    out = await run_stream(
        lambda a, b: a.transform_with(lambda x, y: x.join(y), b),
        [[("a", 1), ("b", 2)], [("c", 3)]],
        [[("b", "x"), ("a", "y")], [("d", 4)]],
        master=master,
    )
    assert sort_each(out) == [[("a", (1, "y")), ("b", (2, "x"))], []]

    def with_time(t: float, x: RDD, y: RDD) -> RDD:
        return x.union(y).map(lambda v: (t, v))

    out = await run_stream(
        lambda a, b: a.transform_with(with_time, b), [[1], [2]], [[10], []], master=master
    )
    assert out == [[(1.0, 1), (1.0, 10)], [(2.0, 2)]]


# ---- two streams ---------------------------------------------------------------------


async def test_union(master: str) -> None:
    out = await run_stream(
        lambda a, b: a.union(b),
        [list(range(3)), list(range(5)), list(range(6))],
        [list(range(3, 6)), list(range(5, 6))],
        master=master,
    )
    assert out == [list(range(6)), list(range(6)), list(range(6))]


async def test_cogroup(master: str) -> None:
    out = await run_stream(
        lambda a, b: a.cogroup(b).map_values(lambda vs: tuple(sorted(v) for v in vs)),
        [
            [(1, 1), (2, 1), (3, 1)],
            [(1, 1), (1, 1), (1, 1), (2, 1)],
            [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 1)],
        ],
        [[(1, 2)], [(4, 1)], [("a", 1), ("a", 1), ("b", 1), ("", 1), ("", 2)]],
        master=master,
    )
    assert sort_each(out) == sort_each([
        [(1, ([1], [2])), (2, ([1], [])), (3, ([1], []))],
        [(1, ([1, 1, 1], [])), (2, ([1], [])), (4, ([], [1]))],
        [("a", ([1, 1], [1, 1])), ("b", ([1], [1])), ("", ([1, 1], [1, 2]))],
    ])


JOIN_LEFT = [[("a", 1), ("b", 2)], [("x", 0)], []]
JOIN_RIGHT = [[("b", 3), ("c", 4)], [], [("y", 1)]]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("join", [[("b", (2, 3))], [], []]),
        ("left_outer_join", [[("a", (1, None)), ("b", (2, 3))], [("x", (0, None))], []]),
        ("right_outer_join", [[("b", (2, 3)), ("c", (None, 4))], [], [("y", (None, 1))]]),
        (
            "full_outer_join",
            [[("a", (1, None)), ("b", (2, 3)), ("c", (None, 4))], [("x", (0, None))],
             [("y", (None, 1))]],
        ),
    ],
)
async def test_joins(master: str, how: str, expected: list[list[Any]]) -> None:
    out = await run_stream(
        lambda a, b: getattr(a, how)(b), JOIN_LEFT, JOIN_RIGHT, master=master
    )
    assert sort_each(out) == expected


async def test_join_with_partitions(master: str) -> None:
    out = await run_stream(
        lambda a, b: a.join(b, 3).glom(), [[("a", 1), ("b", 2)]], [[("b", 3), ("a", 4)]],
        master=master,
    )
    [parts] = out
    assert len(parts) == 3
    assert sorted(x for part in parts for x in part) == [("a", (1, 4)), ("b", (2, 3))]


# ---- the context's own operations: union, transform, slice, cache ----------------------


async def test_ssc_union_and_transform(master: str) -> None:
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        a = ssc.queue_stream([[1, 2], [3]])
        b = ssc.queue_stream([[10], [20, 30]])
        c = ssc.queue_stream([[100], []])
        union = collect_batches(ssc.union(a, b, c))
        seen: list[float] = []

        def combine(time: float, rdds: list[RDD]) -> RDD:
            seen.append(time)
            first, second = rdds
            return first.union(second.map(lambda x: -x))

        transformed = collect_batches(ssc.transform([a, b], combine))
        plain = collect_batches(ssc.transform([a, c], lambda rdds: rdds[1].union(rdds[0])))
        await ssc.start()
        await advance_batches(ssc, 2)
    assert ssc.errors == []
    assert union == [(1.0, [1, 2, 10, 100]), (2.0, [3, 20, 30])]
    assert transformed == [(1.0, [1, 2, -10]), (2.0, [3, -20, -30])]
    assert seen == [1.0, 2.0]
    assert plain == [(1.0, [100, 1, 2]), (2.0, [3])]


async def test_slice_returns_the_remembered_batches(master: str) -> None:
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        ssc.remember(4.0)
        stream = ssc.queue_stream([[1], [2], [3], [4]])
        doubled = stream.map(lambda x: x * 2)
        collect_batches(doubled)
        await ssc.start()
        await advance_batches(ssc, 4)

        async def sliced(begin: float, end: float, of: DStream = stream) -> list[int]:
            return [x for rdd in of.slice(begin, end) for x in await rdd.acollect()]

        assert await sliced(1.0, 1.0) == [1]
        assert await sliced(2.0, 3.0) == [2, 3]
        assert await sliced(2.0, 5.0) == [2, 3, 4]
        assert await sliced(0.0, 4.0) == [1, 2, 3, 4]
        assert await sliced(1.0, 4.0, doubled) == [2, 4, 6, 8]
        assert await sliced(5.0, 9.0) == []
    assert ssc.errors == []


async def test_without_remember_only_the_last_batch_is_kept(master: str) -> None:
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        stream = ssc.queue_stream([[1], [2], [3]])
        collect_batches(stream)
        await ssc.start()
        await advance_batches(ssc, 3)
        assert [await rdd.acollect() for rdd in stream.slice(0.0, 10.0)] == [[3]]


@pytest.mark.parametrize("how", ["cache", "persist"])
async def test_cached_stream_computes_each_batch_once(how: str) -> None:
    """Two outputs read one cached stream: its map runs once per record (``local``: the
    map function runs in this process and appends to the test's list)."""
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return x * 10

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        mapped = ssc.queue_stream([[1, 2, 3], [4, 5], [6]]).map(counted)
        shared = getattr(mapped, how)()
        assert shared is mapped
        first = collect_batches(shared)
        second = collect_batches(shared.map(lambda x: x + 1))
        await ssc.start()
        await advance_batches(ssc, 3)
    assert sorted(calls) == [1, 2, 3, 4, 5, 6]
    assert [r for _, r in first] == [[10, 20, 30], [40, 50], [60]]
    assert [r for _, r in second] == [[11, 21, 31], [41, 51], [61]]


async def test_cached_stream_read_by_a_window_computes_each_batch_once() -> None:
    """The direct output forgets a batch after one interval, the window needs it for three:
    the cache must stay until the cached stream itself forgets the batch."""
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return x

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        mapped = ssc.queue_stream([[1], [2], [3], [4]]).map(counted).cache()
        direct = collect_batches(mapped)
        windowed = collect_batches(mapped.window(3.0, 1.0))
        await ssc.start()
        await advance_batches(ssc, 4)
    assert ssc.errors == []
    assert [r for _, r in direct] == [[1], [2], [3], [4]]
    assert [sorted(r) for _, r in windowed] == [[1], [1, 2], [1, 2, 3], [2, 3, 4]]
    assert sorted(calls) == [1, 2, 3, 4]


async def test_uncached_stream_computes_once_per_output() -> None:
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return x

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        mapped = ssc.queue_stream([[1, 2]]).map(counted)
        collect_batches(mapped)
        collect_batches(mapped)
        await ssc.start()
        await advance_batches(ssc, 1)
    assert sorted(calls) == [1, 1, 2, 2]


async def test_cache_gives_the_same_results_on_the_process_pool() -> None:
    out = await run_stream(
        lambda s: s.map(lambda x: x * x).cache().reduce(operator.add), [[1, 2], [3]],
        master="local[2]",
    )
    assert out == [[5], [9]]


# ---- PySpark's names and PySpark-style programs ----------------------------------------


async def test_camel_case_aliases_give_the_same_results(master: str) -> None:
    lines = [["a b", "a"], ["b c c"], []]

    def snake(s: DStream) -> DStream:
        return (
            s.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)
            .map_values(lambda n: n * 10).flat_map_values(lambda n: [n])
            .left_outer_join(s.flat_map(str.split).count_by_value())
        )

    def camel(s: DStream) -> DStream:
        return (
            s.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(operator.add)
            .mapValues(lambda n: n * 10).flatMapValues(lambda n: [n])
            .leftOuterJoin(s.flatMap(str.split).countByValue())
        )

    expected = [[("a", (20, 2)), ("b", (10, 1))], [("b", (10, 1)), ("c", (20, 2))], []]
    assert sort_each(await run_stream(snake, lines, master=master)) == expected
    assert sort_each(await run_stream(camel, lines, master=master)) == expected

    others = await run_stream(
        lambda s: s.mapPartitionsWithIndex(lambda i, it: [(i, sum(it))])
        .transformWith(lambda a, b: a.union(b), s.mapPartitions(lambda it: [max(it, default=0)]))
        .union(s.keyBy(lambda x: x).groupByKey().mapValues(len).combineByKey(
            int, operator.add, operator.add).partitionBy(2).map(lambda kv: kv[1]))
        .union(s.map(lambda x: (x, 1)).rightOuterJoin(s.map(lambda x: (x, 2))).fullOuterJoin(
            s.map(lambda x: (x, 3))).map(lambda kv: kv[1])),
        [[4, 5]],
        master=master,
        num_partitions=1,
    )
    assert sort_each(others) == sort_each([[(0, 9), 5, 1, 1, ((1, 2), 3), ((1, 2), 3)]])


async def test_camel_case_names_exist_and_forward() -> None:
    for snake_name, camel_name in [
        ("flat_map", "flatMap"), ("map_partitions", "mapPartitions"),
        ("map_partitions_with_index", "mapPartitionsWithIndex"), ("map_values", "mapValues"),
        ("flat_map_values", "flatMapValues"), ("count_by_value", "countByValue"),
        ("reduce_by_key", "reduceByKey"), ("combine_by_key", "combineByKey"),
        ("group_by_key", "groupByKey"), ("partition_by", "partitionBy"),
        ("transform_with", "transformWith"), ("left_outer_join", "leftOuterJoin"),
        ("right_outer_join", "rightOuterJoin"), ("full_outer_join", "fullOuterJoin"),
        ("foreach_rdd", "foreachRDD"), ("save_as_text_files", "saveAsTextFiles"),
        ("save_as_object_files", "saveAsObjectFiles"),
    ]:
        assert callable(getattr(DStream, camel_name)), camel_name
        assert hasattr(DStream, snake_name)
    assert DStream.slideDuration is DStream.slide_duration
    for camel_name in ["queueStream", "socketTextStream", "textFileStream", "receiverStream",
                       "awaitTermination", "awaitTerminationOrTimeout",
                       "addStreamingListener", "removeStreamingListener"]:
        assert callable(getattr(StreamingContext, camel_name)), camel_name


async def test_pyspark_style_program_with_queue_stream(master: str) -> None:
    """PySpark's queue-stream example shape: queueStream, foreachRDD with blocking collect,
    awaitTermination; the same program in camelCase."""
    rdd_queue = [[1, 2, 3], [4, 5], [6]]
    async with StreamingContext(1.0, master=master, clock=ManualClock(0.0)) as ssc:
        seen: list[tuple[float, list[Any]]] = []

        def take_and_store(time: float, rdd: RDD) -> None:
            seen.append((time, rdd.collect()))  # blocking: this runs on a worker thread

        stream = ssc.queueStream(rdd_queue)
        stream.map(lambda x: (x % 2, x)).reduceByKey(operator.add).foreachRDD(
            lambda rdd: seen.append((-1.0, sorted(rdd.collect())))
        )
        stream.foreachRDD(take_and_store)
        await ssc.start()
        await advance_batches(ssc, 4)
        assert await ssc.awaitTermination(0) is False
        await ssc.stop()
        assert await ssc.awaitTermination() is True
    assert seen == [
        (-1.0, [(0, 2), (1, 4)]), (1.0, [1, 2, 3]),
        (-1.0, [(0, 4), (1, 5)]), (2.0, [4, 5]),
        (-1.0, [(0, 6)]), (3.0, [6]),
        (-1.0, []), (4.0, []),
    ]


async def test_queue_stream_all_at_once_and_default() -> None:
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        together = collect_batches(ssc.queue_stream([[1], [2, 3]], one_at_a_time=False))
        defaulted = collect_batches(ssc.queue_stream([[1]], default=[0]))
        await ssc.start()
        await advance_batches(ssc, 3)
    assert [r for _, r in together] == [[1, 2, 3], [], []]
    assert [r for _, r in defaulted] == [[1], [0], [0]]


# ---- errors --------------------------------------------------------------------------


async def test_failing_function_fails_the_job_naming_operator_and_batch(master: str) -> None:
    def boom(x: int) -> int:
        if x == 13:
            raise ValueError("This is a special error")
        return x

    with pytest.raises(JobFailedError) as caught:
        await run_stream(lambda s: s.map(boom), [[1], [2, 13], [3]], master=master)
    error = caught.value
    assert error.batch_time == 2.0
    message = str(error)
    assert "batch 2" in message
    assert "map raised ValueError: This is a special error" in message
    assert "failed 4 time(s)" in message


async def test_failing_function_is_retried_then_its_batch_stops_the_context() -> None:
    attempts: list[int] = []

    def boom(x: int) -> int:
        if x == 13:
            attempts.append(x)
            raise ValueError("bad record")
        return x

    async with StreamingContext(
        1.0, master="local", clock=ManualClock(0.0), conf={"task_max_failures": 3}
    ) as ssc:
        out = collect_batches(ssc.queue_stream([[1], [13], [3]]).map(boom))
        await ssc.start()
        with pytest.raises(JobFailedError, match="batch 2.*map raised ValueError: bad record"):
            await advance_batches(ssc, 3)
        with pytest.raises(JobFailedError, match="batch 2.*map raised ValueError: bad record"):
            await ssc.await_termination(0)
    assert attempts == [13, 13, 13]
    assert out == [(1.0, [1])]
    assert len(ssc.errors) == 1


async def test_unpicklable_function_fails_at_graph_build_time() -> None:
    lock = threading.Lock()
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        stream = ssc.queue_stream([[1]])
        with pytest.raises(NotSerializableError, match="map") as caught:
            stream.map(lambda x: (lock, x))
        assert caught.value.operator.startswith("map")
        assert "lock" in str(caught.value)
        for build in [
            lambda: stream.filter(lambda x: lock is None),
            lambda: stream.flat_map(lambda x: [lock]),
            lambda: stream.map(lambda x: (x, 1)).reduce_by_key(lambda a, b: (lock, a)[1]),
            lambda: stream.map_partitions(lambda it: [lock]),
            lambda: stream.key_by(lambda x: lock),
            lambda: stream.map(lambda x: (x, 1)).combine_by_key(lambda v: lock, max, max),
            lambda: stream.map(lambda x: (x, 1)).partition_by(2, lambda k: hash(lock)),
        ]:
            with pytest.raises(NotSerializableError):
                build()


async def test_unpicklable_function_fails_in_run_stream() -> None:
    lock = threading.Lock()
    with pytest.raises(NotSerializableError, match="the function given to map on"):
        await run_stream(lambda s: s.map(lambda x: (lock, x)), [[1]])
