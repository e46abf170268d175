"""The executor's data path: operators named from tracebacks, records moved in slices,
map outputs forwarded packed. Each runs on the in-process backend and on a process pool."""

from __future__ import annotations

import enum
import operator
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from aiostream_engine import StreamingConf, TaskFailedError
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.protocol import SLICE
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.rdd.core import RDD

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
