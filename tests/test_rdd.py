"""Every RDD operation and action, on the in-process backend and on a two-process pool.

The runner is module-scoped (one process pool for the whole module); the event loop is
shared with it, so ``anyio_backend`` is module-scoped here too. Blocking actions are called
from a worker thread (``anyio.to_thread``), the way a plain foreach_rdd function calls them.
"""

from __future__ import annotations

import datetime
import enum
import operator
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import pytest

from aiostream_engine import ContextStateError, StreamingConf, TaskFailedError, stable_hash
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.rdd.core import RDD

pytestmark = pytest.mark.anyio

PAIRS = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["local", "local[2]"])
async def runner(request: pytest.FixtureRequest) -> AsyncIterator[TaskRunner]:
    task_runner = TaskRunner(backend_for(request.param), StreamingConf())
    await task_runner.start()
    try:
        yield task_runner
    finally:
        await task_runner.stop()


@pytest.fixture(scope="module")
async def local_runner() -> AsyncIterator[TaskRunner]:
    """In process: user functions run here, so a list in the test sees their calls."""
    task_runner = TaskRunner(backend_for("local"), StreamingConf())
    await task_runner.start()
    try:
        yield task_runner
    finally:
        await task_runner.stop()


def pairs(runner: TaskRunner, n: int = 3) -> RDD:
    return runner.parallelize(PAIRS, n)


async def sorted_collect(rdd: RDD) -> list[Any]:
    return sorted(await rdd.acollect())


def add_to_list(acc: list[int], x: int) -> list[int]:
    return [*acc, x]


def merge_lists(a: list[int], b: list[int]) -> list[int]:
    return a + b


def grouped(rdd_output: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """{key: sorted values} of a group_by_key / combine-into-lists output."""
    return {k: sorted(v) for k, v in rdd_output}


def cogrouped(rdd_output: list[tuple[Any, Any]]) -> dict[Any, tuple[list[Any], ...]]:
    return {k: tuple(sorted(side) for side in sides) for k, sides in rdd_output}


# ---- narrow operations ---------------------------------------------------------------


async def test_parallelize_splits_evenly(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(7), 3)
    assert rdd.num_partitions == rdd.getNumPartitions() == 3
    assert await rdd.acollect_partitions() == [[0, 1, 2], [3, 4], [5, 6]]


async def test_map(runner: TaskRunner) -> None:
    assert await runner.parallelize(range(10), 3).map(lambda x: x * 2).acollect() == [
        0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
    ]


async def test_flat_map(runner: TaskRunner) -> None:
    rdd = runner.parallelize([1, 2, 3], 2).flat_map(lambda x: range(x))
    assert await rdd.acollect() == [0, 0, 1, 0, 1, 2]


async def test_filter(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(10), 3).filter(lambda x: x % 3 == 0)
    assert await rdd.acollect() == [0, 3, 6, 9]


async def test_map_partitions(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(10), 3).map_partitions(lambda it: [sum(it)])
    assert await rdd.acollect() == [6, 15, 24]


async def test_map_partitions_with_index(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(5), 3).map_partitions_with_index(
        lambda i, it: [(i, x) for x in it]
    )
    assert await rdd.acollect() == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4)]


async def test_map_values_and_flat_map_values(runner: TaskRunner) -> None:
    rdd = runner.parallelize([("a", 2), ("b", 0), ("c", 1)], 2)
    assert await rdd.map_values(lambda v: v * 10).acollect() == [("a", 20), ("b", 0), ("c", 10)]
    assert await rdd.flat_map_values(range).acollect() == [("a", 0), ("a", 1), ("c", 0)]


async def test_glom(runner: TaskRunner) -> None:
    assert await runner.parallelize(range(7), 3).glom().acollect() == [[0, 1, 2], [3, 4], [5, 6]]
    assert await runner.parallelize([], 2).glom().acollect() == [[], []]


async def test_key_by_keys_values(runner: TaskRunner) -> None:
    rdd = runner.parallelize(["apple", "bob", "cat"], 2).key_by(len)
    assert await rdd.acollect() == [(5, "apple"), (3, "bob"), (3, "cat")]
    assert await rdd.keys().acollect() == [5, 3, 3]
    assert await rdd.values().acollect() == ["apple", "bob", "cat"]


async def test_narrow_chain_keeps_partitioning(runner: TaskRunner) -> None:
    rdd = (
        runner.parallelize(range(12), 4)
        .map(lambda x: x + 1)
        .filter(lambda x: x % 2 == 0)
        .flat_map(lambda x: [x, -x])
    )
    assert rdd.num_partitions == 4
    assert await rdd.glom().acollect() == [[2, -2], [4, -4, 6, -6], [8, -8], [10, -10, 12, -12]]


async def test_empty_rdd(runner: TaskRunner) -> None:
    empty = runner.empty_rdd()
    assert empty.num_partitions == 0
    assert await empty.acollect() == []
    assert await empty.acount() == 0
    assert await empty.atake(3) == []
    assert await empty.ais_empty()
    assert await empty.map(lambda x: x).reduce_by_key(operator.add).acollect() == []


# ---- wide operations -----------------------------------------------------------------


async def test_reduce_by_key(runner: TaskRunner) -> None:
    rdd = pairs(runner).reduce_by_key(operator.add)
    assert rdd.num_partitions == runner.default_parallelism
    assert await sorted_collect(rdd) == [("a", 10), ("b", 7), ("c", 4)]


async def test_reduce_by_key_partitions_by_stable_hash(runner: TaskRunner) -> None:
    rdd = pairs(runner).reduce_by_key(operator.add, 4)
    assert rdd.num_partitions == 4
    parts = await rdd.glom().acollect()
    assert len(parts) == 4
    for index, part in enumerate(parts):
        assert all(stable_hash(k) % 4 == index for k, _ in part)
    assert sorted(x for part in parts for x in part) == [("a", 10), ("b", 7), ("c", 4)]


async def test_combine_by_key(runner: TaskRunner) -> None:
    rdd = pairs(runner).combine_by_key(lambda v: [v], add_to_list, merge_lists, 2)
    assert rdd.num_partitions == 2
    assert grouped(await rdd.acollect()) == {"a": [1, 3, 6], "b": [2, 5], "c": [4]}


async def test_fold_by_key(runner: TaskRunner) -> None:
    rdd = pairs(runner).fold_by_key(0, operator.add)
    assert await sorted_collect(rdd) == [("a", 10), ("b", 7), ("c", 4)]
    # the zero value is applied once per key per map-side partition, as in Spark
    once = pairs(runner, 1).fold_by_key(100, operator.add)
    assert await sorted_collect(once) == [("a", 110), ("b", 107), ("c", 104)]


async def test_aggregate_by_key(runner: TaskRunner) -> None:
    rdd = pairs(runner).aggregate_by_key(
        (0, 0),
        lambda acc, v: (acc[0] + v, acc[1] + 1),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
    )
    assert await sorted_collect(rdd) == [("a", (10, 3)), ("b", (7, 2)), ("c", (4, 1))]


async def test_group_by_key(runner: TaskRunner) -> None:
    rdd = pairs(runner).group_by_key(2)
    assert rdd.num_partitions == 2
    assert grouped(await rdd.acollect()) == {"a": [1, 3, 6], "b": [2, 5], "c": [4]}


async def test_group_by(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(7), 3).group_by(lambda x: x % 3)
    assert grouped(await rdd.acollect()) == {0: [0, 3, 6], 1: [1, 4], 2: [2, 5]}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Device:
    site: str
    number: int


async def test_keys_hashed_by_python_meet_in_one_partition(runner: TaskRunner) -> None:
    """Dates, enums and frozen dataclasses hash through ``hash``, salted per process for
    their str parts: every worker must use one seed or a key splits across partitions."""
    days = [datetime.date(2024, 1, d) for d in range(1, 8)]
    keys: list[Any] = [*days, Color.RED, Color.BLUE, Device("north", 1), Device("south", 2)]
    data = [(k, 1) for k in keys] * 6
    out = await runner.parallelize(data, 6).reduce_by_key(operator.add, 4).acollect()
    assert sorted(out, key=repr) == sorted(((k, 6) for k in keys), key=repr)
    groups = await runner.parallelize(data, 6).group_by_key(3).acollect()
    assert sorted(((k, len(v)) for k, v in groups), key=repr) == sorted(
        ((k, 6) for k in keys), key=repr
    )


async def test_partition_by_places_each_key_by_stable_hash(runner: TaskRunner) -> None:
    data = [(f"k{i % 7}", i) for i in range(30)] + [((1, "t"), 0), (None, 1), (2.5, 2)]
    rdd = runner.parallelize(data, 4).partition_by(3)
    assert rdd.num_partitions == 3
    parts = await rdd.glom().acollect()
    assert len(parts) == 3
    for index, part in enumerate(parts):
        assert all(stable_hash(k) % 3 == index for k, _ in part)
    assert Counter(x for part in parts for x in part) == Counter(data)


async def test_partition_by_custom_function(runner: TaskRunner) -> None:
    rdd = runner.parallelize([(i, str(i)) for i in range(8)], 3).partition_by(2, lambda k: k // 4)
    assert await rdd.glom().acollect() == [
        [(0, "0"), (1, "1"), (2, "2"), (3, "3")],
        [(4, "4"), (5, "5"), (6, "6"), (7, "7")],
    ]


@pytest.mark.parametrize(("source", "target"), [(3, 5), (3, 1), (1, 4), (4, 2)])
async def test_repartition_keeps_every_record(runner: TaskRunner, source: int, target: int) -> None:
    data = [i % 5 for i in range(23)]  # duplicates: compare as multisets
    rdd = runner.parallelize(data, source).repartition(target)
    assert rdd.num_partitions == target
    parts = await rdd.glom().acollect()
    assert len(parts) == target
    assert Counter(x for part in parts for x in part) == Counter(data)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= source


async def test_coalesce(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(10), 4).coalesce(2)
    assert rdd.num_partitions == 2
    assert sorted(await rdd.acollect()) == list(range(10))


async def test_distinct(runner: TaskRunner) -> None:
    rdd = runner.parallelize([3, 1, 3, 2, 1, 3, "x", "x", (1, 2), (1, 2)], 3).distinct()
    assert sorted(await rdd.acollect(), key=repr) == sorted([1, 2, 3, "x", (1, 2)], key=repr)
    assert runner.parallelize([1, 1], 2).distinct(5).num_partitions == 5


async def test_cogroup_two_sides(runner: TaskRunner) -> None:
    left = runner.parallelize([("a", 1), ("b", 2), ("a", 3)], 2)
    right = runner.parallelize([("a", "x"), ("c", "y")], 2)
    rdd = left.cogroup(right)
    assert cogrouped(await rdd.acollect()) == {
        "a": ([1, 3], ["x"]),
        "b": ([2], []),
        "c": ([], ["y"]),
    }
    assert cogrouped(await left.group_with(right, num_partitions=3).acollect()) == cogrouped(
        await rdd.acollect()
    )


async def test_cogroup_three_sides(runner: TaskRunner) -> None:
    a = runner.parallelize([("k", 1), ("l", 2)], 2)
    b = runner.parallelize([("k", 10), ("k", 11)], 1)
    c = runner.parallelize([("m", 100), ("l", 200)], 3)
    rdd = a.cogroup(b, c, num_partitions=2)
    assert rdd.num_partitions == 2
    assert cogrouped(await rdd.acollect()) == {
        "k": ([1], [10, 11], []),
        "l": ([2], [], [200]),
        "m": ([], [], [100]),
    }


async def test_joins(runner: TaskRunner) -> None:
    left = runner.parallelize([("a", 1), ("b", 2), ("a", 3), ("d", 4)], 2)
    right = runner.parallelize([("a", "x"), ("a", "y"), ("c", "z"), ("d", "w")], 3)
    assert await sorted_collect(left.join(right)) == [
        ("a", (1, "x")), ("a", (1, "y")), ("a", (3, "x")), ("a", (3, "y")), ("d", (4, "w")),
    ]
    assert sorted(await left.left_outer_join(right).acollect(), key=repr) == sorted(
        [("a", (1, "x")), ("a", (1, "y")), ("a", (3, "x")), ("a", (3, "y")),
         ("b", (2, None)), ("d", (4, "w"))],
        key=repr,
    )
    assert sorted(await left.right_outer_join(right).acollect(), key=repr) == sorted(
        [("a", (1, "x")), ("a", (1, "y")), ("a", (3, "x")), ("a", (3, "y")),
         ("c", (None, "z")), ("d", (4, "w"))],
        key=repr,
    )
    assert sorted(await left.full_outer_join(right, 4).acollect(), key=repr) == sorted(
        [("a", (1, "x")), ("a", (1, "y")), ("a", (3, "x")), ("a", (3, "y")),
         ("b", (2, None)), ("c", (None, "z")), ("d", (4, "w"))],
        key=repr,
    )
    assert left.join(right, 4).num_partitions == 4


async def test_subtract_by_key(runner: TaskRunner) -> None:
    left = runner.parallelize([("a", 1), ("b", 2), ("a", 3), ("c", 4)], 2)
    right = runner.parallelize([("a", None), ("z", 0)], 1)
    assert await sorted_collect(left.subtract_by_key(right)) == [("b", 2), ("c", 4)]


async def test_union(runner: TaskRunner) -> None:
    a = runner.parallelize([1, 2, 3], 2)
    b = runner.parallelize([3, 4], 3)
    rdd = a.union(b)
    assert rdd.num_partitions == 5
    assert await rdd.glom().acollect() == [[1, 2], [3], [3], [4], []]
    assert await rdd.acollect() == [1, 2, 3, 3, 4]
    assert await rdd.union(a).acount() == 8


async def test_partition_index_is_the_operators_own(runner: TaskRunner) -> None:
    """map_partitions_with_index sees its own RDD's partition index, also when its RDD is
    the second side of a union or a later chunk of take."""
    a = runner.parallelize([1, 2], 2).map_partitions_with_index(lambda i, it: [("a", i)])
    b = runner.parallelize([3, 4, 5], 3).map_partitions_with_index(lambda i, it: [("b", i)])
    union = a.union(b)
    assert await union.acollect() == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2)]
    assert await union.map_partitions_with_index(lambda i, it: [i]).acollect() == [0, 1, 2, 3, 4]
    indexed = runner.parallelize(range(6), 6).map_partitions_with_index(lambda i, it: [i])
    assert await indexed.atake(6) == [0, 1, 2, 3, 4, 5]


async def test_sort_by_key(runner: TaskRunner) -> None:
    rdd = runner.parallelize([("b", 1), ("C", 2), ("a", 3), ("d", 4)], 3)
    assert await rdd.sort_by_key().acollect() == [("C", 2), ("a", 3), ("b", 1), ("d", 4)]
    assert await rdd.sort_by_key(False).acollect() == [("d", 4), ("b", 1), ("a", 3), ("C", 2)]
    assert await rdd.sort_by_key(keyfunc=str.lower).acollect() == [
        ("a", 3), ("b", 1), ("C", 2), ("d", 4),
    ]


async def test_sort_by(runner: TaskRunner) -> None:
    rdd = runner.parallelize([5, -3, 1, -8, 2], 2)
    assert await rdd.sort_by(abs).acollect() == [1, 2, -3, 5, -8]
    assert await rdd.sort_by(lambda x: x, ascending=False).acollect() == [5, 2, 1, -3, -8]


async def test_shuffle_of_a_shuffle(runner: TaskRunner) -> None:
    words = runner.parallelize("a b a c b a d".split(), 3)
    counts = words.map(lambda w: (w, 1)).reduce_by_key(operator.add, 2)
    by_count = counts.map(lambda kv: (kv[1], kv[0])).group_by_key(3)
    assert grouped(await by_count.acollect()) == {1: ["c", "d"], 2: ["b"], 3: ["a"]}


# ---- actions -------------------------------------------------------------------------


async def test_collect_and_count(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(10), 4)
    assert await rdd.acollect() == list(range(10))
    assert await rdd.acount() == 10
    assert await rdd.filter(lambda x: x > 6).acount() == 3


async def test_take_across_partitions(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(10), 4)  # [0,1,2] [3,4,5] [6,7] [8,9]
    assert await rdd.atake(2) == [0, 1]
    assert await rdd.atake(5) == [0, 1, 2, 3, 4]
    assert await rdd.atake(9) == list(range(9))
    assert await rdd.atake(100) == list(range(10))
    assert await rdd.atake(0) == []
    sparse = runner.from_partitions([[], [], [7], [], [8, 9]])
    assert await sparse.atake(2) == [7, 8]
    assert await sparse.filter(lambda x: x > 7).atake(1) == [8]


async def test_take_computes_only_the_partitions_it_needs(local_runner: TaskRunner) -> None:
    computed: list[int] = []

    def record_partition(index: int, it: Iterator[int]) -> Iterator[int]:
        computed.append(index)
        return it

    rdd = local_runner.parallelize(range(40), 8).map_partitions_with_index(record_partition)
    assert computed == []  # lazy
    assert await rdd.atake(3) == [0, 1, 2]
    assert computed == [0]
    computed.clear()
    assert await rdd.atake(12) == list(range(12))  # partition 0, then the next four
    assert sorted(computed) == [0, 1, 2, 3, 4]
    computed.clear()
    assert await rdd.atake(40) == list(range(40))
    assert sorted(computed) == list(range(8))


async def test_first(runner: TaskRunner) -> None:
    assert await runner.from_partitions([[], [4, 5]]).afirst() == 4
    with pytest.raises(ValueError, match="empty"):
        await runner.parallelize([], 2).afirst()


async def test_reduce(runner: TaskRunner) -> None:
    assert await runner.parallelize(range(1, 11), 3).areduce(operator.add) == 55
    assert await runner.from_partitions([[], [3], [], [9, 2]]).areduce(max) == 9
    with pytest.raises(ValueError, match="empty"):
        await runner.parallelize([], 3).areduce(operator.add)


async def test_fold_and_sum(runner: TaskRunner) -> None:
    rdd = runner.parallelize(range(1, 11), 3)
    assert await rdd.afold(0, operator.add) == 55
    assert await rdd.asum() == 55
    assert await runner.parallelize([], 2).asum() == 0
    # zero applied per partition and once more on the driver, as in Spark
    assert await rdd.afold(1, operator.add) == 55 + 4
    assert await rdd.afold(1, operator.mul) == 3628800


async def test_min_max(runner: TaskRunner) -> None:
    rdd = runner.parallelize([4, -7, 2, 9], 3)
    assert await rdd.amax() == 9
    assert await rdd.amin() == -7
    assert await rdd.amax(key=abs) == 9
    assert await rdd.amin(key=abs) == 2


async def test_foreach_partition(runner: TaskRunner, tmp_path: Any) -> None:
    directory = str(tmp_path)

    def write(it: Iterator[int]) -> None:
        with open(os.path.join(directory, uuid.uuid4().hex), "w") as out:
            out.write(",".join(str(x) for x in it))

    await runner.parallelize(range(10), 3).aforeach_partition(write)
    contents = sorted(open(os.path.join(directory, name)).read() for name in os.listdir(directory))
    assert contents == ["0,1,2,3", "4,5,6", "7,8,9"]


async def test_foreach_runs_per_record(local_runner: TaskRunner) -> None:
    seen: list[int] = []
    await local_runner.parallelize(range(5), 2).aforeach(seen.append)
    assert sorted(seen) == [0, 1, 2, 3, 4]


async def test_count_by_value_and_key(runner: TaskRunner) -> None:
    rdd = runner.parallelize(["a", "b", "a", "c", "a", "b"], 4)
    assert await rdd.acount_by_value() == {"a": 3, "b": 2, "c": 1}
    assert await pairs(runner).acount_by_key() == {"a": 3, "b": 2, "c": 1}


async def test_collect_as_map(runner: TaskRunner) -> None:
    assert await runner.parallelize([(1, "x"), (2, "y")], 2).acollect_as_map() == {1: "x", 2: "y"}


async def test_take_ordered_and_top(runner: TaskRunner) -> None:
    rdd = runner.parallelize([10, 4, 2, 12, 3, 7, 1], 3)
    assert await rdd.atake_ordered(3) == [1, 2, 3]
    assert await rdd.atake_ordered(3, key=lambda x: -x) == [12, 10, 7]
    assert await rdd.atop(2) == [12, 10]
    assert await rdd.atop(3, key=lambda x: -x) == [1, 2, 3]
    assert await rdd.atake_ordered(20) == [1, 2, 3, 4, 7, 10, 12]


async def test_is_empty(runner: TaskRunner) -> None:
    assert await runner.parallelize([], 3).ais_empty()
    assert not await runner.from_partitions([[], [1]]).ais_empty()


async def test_blocking_actions_from_a_worker_thread(runner: TaskRunner, tmp_path: Any) -> None:
    """The plain names block and are what a (threaded) foreach_rdd function calls."""
    rdd = runner.parallelize([3, 1, 2, 3], 2)
    kv = pairs(runner)

    def run_all() -> dict[str, Any]:
        written = tmp_path / "blocking"
        written.mkdir()

        def write(it: Iterator[int]) -> None:
            (written / uuid.uuid4().hex).write_text(repr(list(it)))

        rdd.foreach_partition(write)
        return {
            "collect": rdd.collect(),
            "count": rdd.count(),
            "take": rdd.take(3),
            "first": rdd.first(),
            "reduce": rdd.reduce(operator.add),
            "fold": rdd.fold(0, operator.add),
            "sum": rdd.sum(),
            "max": rdd.max(),
            "min": rdd.min(),
            "is_empty": rdd.is_empty(),
            "count_by_value": dict(rdd.count_by_value()),
            "count_by_key": dict(kv.count_by_key()),
            "collect_as_map": kv.collect_as_map(),
            "take_ordered": rdd.take_ordered(2),
            "top": rdd.top(2),
            "parts": sorted((written / name).read_text() for name in os.listdir(written)),
        }

    got = await anyio.to_thread.run_sync(run_all)
    assert got == {
        "collect": [3, 1, 2, 3],
        "count": 4,
        "take": [3, 1, 2],
        "first": 3,
        "reduce": 9,
        "fold": 9,
        "sum": 9,
        "max": 3,
        "min": 1,
        "is_empty": False,
        "count_by_value": {3: 2, 1: 1, 2: 1},
        "count_by_key": {"a": 3, "b": 2, "c": 1},
        "collect_as_map": {"a": 6, "b": 5, "c": 4},
        "take_ordered": [1, 2],
        "top": [3, 3],
        "parts": ["[2, 3]", "[3, 1]"],
    }


async def test_blocking_action_on_the_event_loop_points_to_the_async_form(
    runner: TaskRunner,
) -> None:
    rdd = runner.parallelize([1, 2], 1)
    with pytest.raises(ContextStateError, match="acollect"):
        rdd.collect()
    with pytest.raises(ContextStateError, match="acollect"):
        rdd.count()


async def test_camel_case_aliases(runner: TaskRunner) -> None:
    kv = pairs(runner)
    assert sorted(await kv.reduceByKey(operator.add).acollect()) == [("a", 10), ("b", 7), ("c", 4)]
    assert await runner.parallelize([1, 2], 2).flatMap(lambda x: [x] * x).acollect() == [1, 2, 2]
    assert await kv.mapValues(str).atake(1) == [("a", "1")]
    assert await kv.sortByKey(False).atake(1) == [("c", 4)]
    assert grouped(await kv.groupByKey().acollect()) == {"a": [1, 3, 6], "b": [2, 5], "c": [4]}
    assert await runner.emptyRDD().acount() == 0


async def test_a_failing_function_fails_the_action_after_every_retry(
    local_runner: TaskRunner,
) -> None:
    attempts: list[int] = []

    def boom(x: int) -> int:
        if x == 3:
            attempts.append(x)
            raise ZeroDivisionError("bad record")
        return x

    with pytest.raises(TaskFailedError) as caught:
        await local_runner.parallelize(range(6), 2).map(boom).acollect()
    assert len(attempts) == local_runner.conf.task_max_failures == 4
    assert caught.value.attempts == 4
    assert "map raised ZeroDivisionError: bad record" in str(caught.value)


async def test_a_failing_function_on_the_process_pool_names_the_operator(
    runner: TaskRunner,
) -> None:
    def boom(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(TaskFailedError, match="filter raised KeyError"):
        await runner.parallelize([1], 1).map(lambda x: x).filter(boom).acollect()


def first_word(line: str) -> str:
    return next(iter(line.split()))  # StopIteration on an empty line


@pytest.mark.parametrize(
    ("operator_name", "apply"),
    [
        ("map", lambda rdd: rdd.map(first_word)),
        ("filter", lambda rdd: rdd.filter(first_word)),
        ("flat_map", lambda rdd: rdd.flat_map(lambda line: [first_word(line)])),
        ("map_values", lambda rdd: rdd.key_by(len).map_values(first_word)),
        ("key_by", lambda rdd: rdd.key_by(first_word)),
    ],
)
async def test_stop_iteration_in_a_user_function_fails_instead_of_truncating(
    runner: TaskRunner, operator_name: str, apply: Any
) -> None:
    """A StopIteration escaping a user function must not read as the partition's end."""
    rdd = runner.parallelize(["a b", "", "c d"], 1)
    with pytest.raises(TaskFailedError, match=f"{operator_name} raised RuntimeError"):
        await apply(rdd).acollect()


async def test_stop_iteration_in_foreach_fails(local_runner: TaskRunner) -> None:
    seen: list[str] = []

    def visit(line: str) -> None:
        seen.append(first_word(line))

    with pytest.raises(TaskFailedError, match="foreach raised RuntimeError"):
        await local_runner.parallelize(["a", "", "c"], 1).aforeach(visit)
    assert "c" not in seen


async def test_repartition_needs_a_partition(runner: TaskRunner) -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        runner.parallelize([1, 2], 2).repartition(0)


# ---- cache / persist / unpersist -------------------------------------------------------


async def test_cached_rdd_computes_its_lineage_once(local_runner: TaskRunner) -> None:
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return x * 10

    rdd = local_runner.parallelize(range(6), 2).map(counted)
    await rdd.acollect()
    await rdd.acollect()
    assert len(calls) == 12  # without cache: every action recomputes

    calls.clear()
    cached = local_runner.parallelize(range(6), 2).map(counted).cache()
    assert cached.is_cached
    assert calls == []  # cache is lazy too
    assert await cached.acollect() == [0, 10, 20, 30, 40, 50]
    assert await cached.acount() == 6
    assert await cached.atake(2) == [0, 10]
    assert await cached.map(lambda x: x + 1).filter(lambda x: x > 40).acollect() == [41, 51]
    assert sorted(await cached.map(lambda x: (x % 20, x)).reduce_by_key(operator.add).acollect()) == [
        (0, 60), (10, 90),
    ]
    assert sorted(calls) == [0, 1, 2, 3, 4, 5]

    cached.unpersist()
    assert not cached.is_cached
    assert await cached.acount() == 6
    assert len(calls) == 12


async def test_persist_caches_a_shuffle_once(local_runner: TaskRunner) -> None:
    calls: list[int] = []

    def counted(kv: tuple[str, int]) -> tuple[str, int]:
        calls.append(kv[1])
        return kv

    reduced = pairs(local_runner).map(counted).reduce_by_key(operator.add).persist()
    first = sorted(await reduced.acollect())
    second = sorted(await reduced.acollect())
    assert first == second == [("a", 10), ("b", 7), ("c", 4)]
    assert len(calls) == len(PAIRS)


async def test_concurrent_actions_on_a_cached_rdd_compute_once(local_runner: TaskRunner) -> None:
    calls: list[int] = []

    def counted(x: int) -> int:
        calls.append(x)
        return x

    cached = local_runner.parallelize(range(8), 4).map(counted).cache()
    results: list[Any] = []

    async def collect() -> None:
        results.append(await cached.acollect())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(collect)
    assert results == [list(range(8))] * 3
    assert sorted(calls) == list(range(8))


async def test_cache_on_the_process_pool(runner: TaskRunner) -> None:
    cached = runner.parallelize(range(6), 3).map(lambda x: x * x).cache()
    assert await cached.acollect() == [0, 1, 4, 9, 16, 25]
    assert await cached.asum() == 55
