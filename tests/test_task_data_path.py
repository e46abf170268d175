"""The executor's data path: per-record operators fused into one loop (and into the
shuffle's combine), operators named from tracebacks, records moved in slices, map outputs
forwarded packed. Each runs on the in-process backend and on a process pool."""

from __future__ import annotations

import enum
import operator
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from aiostream_engine import StreamingConf, TaskFailedError
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.protocol import SLICE
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.rdd.core import RDD
from aiostream_engine.rdd.tasks import fuse_record_stages

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=["local", "local[2]"])
async def runner(request: pytest.FixtureRequest) -> AsyncIterator[TaskRunner]:
    task_runner = TaskRunner(backend_for(request.param), StreamingConf(task_max_failures=1))
    await task_runner.start()
    try:
        yield task_runner
    finally:
        await task_runner.stop()


def fail(*_: Any) -> Any:
    raise ValueError("bad record")


def failing_partition(records: Iterator[Any]) -> Iterator[Any]:
    for record in records:
        yield fail(record)


@pytest.mark.parametrize(
    ("operator_name", "build"),
    [
        # the failing stage, then stages that consume it (generators, map objects, lists)
        ("map", lambda rdd: rdd.map(fail).map(lambda x: x).glom()),
        ("map_values", lambda rdd: rdd.map_values(fail).keys().filter(bool)),
        ("keys", lambda rdd: rdd.map(lambda x: 5).keys().map(lambda x: x)),  # 5 is no pair
        ("map_partitions", lambda rdd: rdd.map_partitions(lambda it: [fail(sum(1 for _ in it))])),
        ("map_partitions", lambda rdd: rdd.map_partitions(failing_partition).map(lambda x: x)),
        ("filter", lambda rdd: rdd.filter(fail).reduce_by_key(operator.add)),
        ("reduce_by_key", lambda rdd: rdd.map(lambda kv: ("k", 1)).reduce_by_key(fail)),
        ("reduce_by_key", lambda rdd: rdd.reduce_by_key(operator.add).map(lambda kv: ("k", 1))
         .reduce_by_key(fail)),
    ],
)
async def test_the_failing_operator_is_named_wherever_it_sits_in_the_chain(
    runner: TaskRunner, operator_name: str, build: Callable[[RDD], RDD]
) -> None:
    rdd = runner.parallelize([("a", 1), ("b", 2), ("a", 3)], 1)
    with pytest.raises(TaskFailedError, match=f"last error: {operator_name} raised"):
        await build(rdd).acollect()


def first_word(line: str) -> str:
    return next(iter(line.split()))  # StopIteration on an empty line


def raise_key_error(*_: Any) -> Any:
    raise KeyError("from the user")


async def test_a_fused_chain_of_every_per_record_operator(runner: TaskRunner) -> None:
    """Nested loops (two flat_maps) with stages after them, each step on its own record."""
    lines = ["a bb", "", "ccc d", "ee"]
    chain = (
        runner.parallelize(lines, 2)
        .flat_map(str.split)
        .filter(lambda w: w != "d")
        .key_by(len)
        .flat_map_values(lambda w: [w, w.upper()])
        .map_values(lambda w: w + "!")
        .flat_map(lambda kv: [kv, (kv[0] * 10, kv[1])])
        .map(lambda kv: (kv[1], kv[0]))
        .values()
    )
    assert await chain.acollect() == [
        1, 10, 1, 10, 2, 20, 2, 20, 3, 30, 3, 30, 2, 20, 2, 20,
    ]
    keyed = runner.parallelize(lines, 1).flat_map(str.split).key_by(len).keys()
    assert await keyed.acollect() == [1, 2, 3, 1, 2]


def test_runs_of_per_record_stages_fuse_into_one_stage() -> None:
    rdd = TaskRunner(backend_for("local"), StreamingConf()).parallelize([], 1)
    chain = rdd.flat_map(str.split).map(len).map_partitions(sorted).filter(bool).values().glom()
    stages = anyio.run(chain._plans)[0].stages
    fused = fuse_record_stages(stages)
    assert [[step.operator for step in stage.steps] for stage in fused] == [
        ["flat_map", "map"], [], ["filter", "values"], [],
    ]
    assert [stage.operator for stage in fused] == ["flat_map", "map_partitions", "filter", "glom"]


async def test_the_shuffle_combines_a_fused_chain_in_its_loop(runner: TaskRunner) -> None:
    lines = ["a b a", "", "b c", "a"]
    counts = runner.parallelize(lines, 2).flat_map(str.split).map(lambda w: (w, 1))
    assert await counts.reduce_by_key(operator.add, 3).acollect_as_map() == {"a": 3, "b": 2, "c": 1}
    lists = counts.filter(lambda kv: kv[0] != "c").combine_by_key(
        lambda v: [v], lambda acc, v: [*acc, v + 1], operator.add, 1
    )
    assert await lists.acollect_as_map() == {"a": [1, 2, 1], "b": [1, 1]}


@pytest.mark.parametrize("merge", [operator.add, operator.mul, operator.or_, operator.and_])
async def test_a_merge_that_is_an_operator_combines_as_the_function_does(
    runner: TaskRunner, merge: Callable[[Any, Any], Any]
) -> None:
    """The map-side combine applies +, *, |, & itself for these (``fusion``)."""
    pairs = [(f"k{i % 7}", i % 11 + 1) for i in range(200)]
    expected: dict[str, int] = {}
    for key, value in pairs:
        expected[key] = merge(expected[key], value) if key in expected else value
    rdd = runner.parallelize(pairs, 2).map(lambda kv: kv)
    assert await rdd.reduce_by_key(merge, 3).acollect_as_map() == expected
    mixed = runner.parallelize([("k", 1), ("k", None)], 1).map(lambda kv: kv)
    with pytest.raises(TaskFailedError, match="reduce_by_key raised TypeError"):
        await mixed.reduce_by_key(merge).acollect()


@pytest.mark.parametrize(
    ("operator_name", "build"),
    [
        ("flat_map", lambda rdd: rdd.flat_map(fail).map(lambda w: (w, 1))),
        ("flat_map", lambda rdd: rdd.flat_map(failing_partition)),  # fails while iterated
        ("map", lambda rdd: rdd.flat_map(str.split).map(fail)),
        ("filter", lambda rdd: rdd.flat_map(str.split).filter(fail).map(lambda w: (w, 1))),
        ("key_by", lambda rdd: rdd.flat_map(str.split).key_by(fail)),
        ("map_values", lambda rdd: rdd.key_by(len).map_values(fail)),
        ("flat_map_values", lambda rdd: rdd.key_by(len).flat_map_values(fail)),
        ("keys", lambda rdd: rdd.flat_map(str.split).map(len).keys().map(lambda k: (k, 1))),  # no pairs
        ("map_partitions", lambda rdd: rdd.flat_map(str.split).map_partitions(failing_partition)
         .map(lambda w: (w, 1))),
        ("reduce_by_key", lambda rdd: rdd.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(fail)),
        ("reduce_by_key", lambda rdd: rdd.flat_map(str.split).map(lambda w: ([w], 1))),  # unhashable
    ],
)
async def test_the_failing_operator_of_a_chain_combined_by_a_shuffle_is_named(
    runner: TaskRunner, operator_name: str, build: Callable[[RDD], RDD]
) -> None:
    rdd = runner.parallelize(["a b", "a"], 1)
    with pytest.raises(TaskFailedError, match=f"last error: {operator_name} raised"):
        await build(rdd).reduce_by_key(operator.add).acollect()


async def test_a_key_error_from_the_merge_function_is_not_a_new_key(runner: TaskRunner) -> None:
    words = runner.parallelize(["a a"], 1).flat_map(str.split).map(lambda w: (w, 1))
    with pytest.raises(TaskFailedError, match="reduce_by_key raised KeyError: 'from the user'"):
        await words.reduce_by_key(raise_key_error).acollect()


@pytest.mark.parametrize(
    ("operator_name", "build"),
    [
        ("map", lambda rdd: rdd.map(first_word).map(lambda w: (w, 1))),
        ("flat_map", lambda rdd: rdd.flat_map(lambda line: [(first_word(line), 1)])),
        ("filter", lambda rdd: rdd.filter(first_word).map(lambda line: (line, 1))),
        ("map_values", lambda rdd: rdd.key_by(len).map_values(first_word)),
    ],
)
async def test_stop_iteration_in_a_chain_combined_by_a_shuffle_fails(
    runner: TaskRunner, operator_name: str, build: Callable[[RDD], RDD]
) -> None:
    """The combining loop is a plain function: the StopIteration surfaces as itself."""
    rdd = runner.parallelize(["a b", "", "c d"], 1)
    with pytest.raises(TaskFailedError, match=f"last error: {operator_name} raised StopIteration"):
        await build(rdd).reduce_by_key(operator.add).acollect()


class Colour(enum.StrEnum):
    RED = "red"


async def test_records_cross_in_slices_keeping_order_and_types(runner: TaskRunner) -> None:
    lines = [f"line {i}" for i in range(2 * SLICE + 5)]
    mixed: list[Any] = [*lines[:SLICE], Colour.RED, (1, "a"), b"raw", 2.5, None, True]
    assert await runner.parallelize(lines, 2).acollect() == lines
    got = await runner.parallelize(mixed, 1).acollect()
    assert got == mixed
    assert [type(x) for x in got] == [type(x) for x in mixed]  # str subclass stays one


async def test_a_shuffle_forwards_map_outputs_between_processes(runner: TaskRunner) -> None:
    words = [f"w{i % 97}" for i in range(10_000)]
    counts = await runner.parallelize(words, 3).map(lambda w: (w, 1)).reduce_by_key(
        operator.add, 4
    ).acollect_as_map()
    assert counts == {f"w{i}": len(range(i, 10_000, 97)) for i in range(97)}


async def test_raw_blocks_reach_the_workers_as_their_buffers(runner: TaskRunner) -> None:
    """A partition of raw blocks travels as the blocks without their buffers plus each
    buffer as one part, unpickled (written in pieces of at most 1 MiB), and is whole
    again on the worker."""
    from aiostream_engine.executor.protocol import PIECE, decode_request, pieces, request_parts
    from aiostream_engine.raw import RawLines
    from aiostream_engine.rdd.tasks import RecordsInput, TaskPlan

    big = RawLines.of([b"x" * 1000] * 2500)  # 2.5 MB: three pieces
    small = RawLines.of([b"a", b"b"])
    count, parts = request_parts(TaskPlan(RecordsInput([big, small])), 0, [])
    encoded = list(parts)
    assert count == len(encoded) == 1 + 2
    assert encoded[1].obj is big.data and encoded[2].obj is small.data  # not copies
    written = [list(pieces(p)) for p in encoded[1:]]
    assert [len(w) for w in written] == [3, 1]
    assert all(len(piece) <= PIECE for w in written for piece in w)
    assert b"".join(written[0]) == big.data
    plan, _, _ = decode_request([b"".join(pieces(p)) for p in encoded])
    assert list(plan.input.open()) == [big, small]
    lengths = runner.from_partitions([[big], [small]]).map(len)
    assert await lengths.acollect() == [2500, 2]
