"""Output operations: pprint, save_as_text_files, save_as_object_files, foreach_rdd."""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import (
    ContextStateError,
    DStream,
    JobFailedError,
    ManualClock,
    StreamingConf,
    StreamingContext,
)
from aiostream_engine.dstream.output import save_batch
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.rdd.core import RDD
from aiostream_engine.testing import advance_batches, run_stream

pytestmark = pytest.mark.anyio

MASTERS = ["local", "local[2]"]
DASHES = "-------------------------------------------"


@pytest.fixture(params=MASTERS)
def master(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def output_then(register: Any) -> Any:
    """A run_stream build that registers an output operation and also collects."""

    def build(stream: DStream) -> DStream:
        register(stream)
        return stream

    return build


def header(seconds: float) -> list[str]:
    # PySpark prints the batch time as str(datetime.fromtimestamp(ms / 1000.0))
    return [DASHES, f"Time: {datetime.fromtimestamp(seconds)}", DASHES]


# ---- pprint --------------------------------------------------------------------------


async def test_pprint_layout(master: str, capsys: pytest.CaptureFixture[str]) -> None:
    await run_stream(
        output_then(lambda s: s.pprint(3)),
        [[1, 2, 3, 4], [("a", 1), "b", 2.5], [], [7, 8, 9]],
        master=master,
    )
    lines = capsys.readouterr().out.split("\n")
    assert lines == [
        *header(1.0), "1", "2", "3", "...", "",
        *header(2.0), "('a', 1)", "b", "2.5", "",
        *header(3.0), "",
        *header(4.0), "7", "8", "9", "",
        "",
    ]


async def test_pprint_default_shows_ten(capsys: pytest.CaptureFixture[str]) -> None:
    await run_stream(output_then(lambda s: s.pprint()), [list(range(12))])
    assert capsys.readouterr().out.split("\n") == [
        *header(1.0), *[str(i) for i in range(10)], "...", "", "",
    ]


async def test_pprint_prints_pyspark_time(capsys: pytest.CaptureFixture[str]) -> None:
    await run_stream(output_then(lambda s: s.pprint(1)), [[1], [2]], batch_interval=0.5)
    out = capsys.readouterr().out
    assert f"Time: {datetime.fromtimestamp(0.5)}\n" in out
    assert f"Time: {datetime.fromtimestamp(1.0)}\n" in out


# ---- save_as_text_files / save_as_object_files -----------------------------------------


async def test_save_as_text_files(master: str, tmp_path: Path) -> None:
    prefix = str(tmp_path / "out")
    out = await run_stream(
        output_then(lambda s: s.save_as_text_files(prefix, "txt")),
        [[1, "two", (3, 4)], [], [5, 6, 7, 8, 9]],
        master=master,
        num_partitions=2,
    )
    assert out == [[1, "two", (3, 4)], [], [5, 6, 7, 8, 9]]
    assert sorted(os.listdir(tmp_path)) == ["out-1000.txt", "out-2000.txt", "out-3000.txt"]
    expected = {
        "out-1000.txt": ["1\ntwo\n", "(3, 4)\n"],
        "out-2000.txt": ["", ""],
        "out-3000.txt": ["5\n6\n7\n", "8\n9\n"],
    }
    for name, parts in expected.items():
        directory = tmp_path / name
        assert sorted(os.listdir(directory)) == ["_SUCCESS", "part-00000", "part-00001"]
        assert [(directory / f"part-{i:05d}").read_text() for i in range(2)] == parts
        assert (directory / "_SUCCESS").read_text() == ""


async def test_save_as_text_files_without_suffix_one_part_per_partition(tmp_path: Path) -> None:
    prefix = str(tmp_path / "words")
    await run_stream(
        output_then(lambda s: s.repartition(3).saveAsTextFiles(prefix)),
        [["a", "b", "c", "d", "e"]],
    )
    directory = tmp_path / "words-1000"
    assert sorted(os.listdir(tmp_path)) == ["words-1000"]
    assert sorted(os.listdir(directory)) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    lines = [
        line
        for i in range(3)
        for line in (directory / f"part-{i:05d}").read_text().splitlines()
    ]
    assert sorted(lines) == ["a", "b", "c", "d", "e"]


@pytest.fixture
async def local_runner() -> AsyncIterator[TaskRunner]:
    runner = TaskRunner(backend_for("local"), StreamingConf())
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def test_saving_the_same_batch_again_overwrites(local_runner: TaskRunner, tmp_path: Path) -> None:
    save = save_batch(str(tmp_path / "batch"), "out", text=True)
    await save(5.0, local_runner.parallelize(["old-1", "old-2", "old-3"], 3))
    directory = tmp_path / "batch-5000.out"
    assert sorted(os.listdir(directory)) == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]

    await save(5.0, local_runner.parallelize(["new-1", "new-2"], 1))
    assert sorted(os.listdir(tmp_path)) == ["batch-5000.out"]  # no staging or old copies left
    assert sorted(os.listdir(directory)) == ["_SUCCESS", "part-00000"]
    assert (directory / "part-00000").read_text() == "new-1\nnew-2\n"


async def test_a_failed_save_leaves_no_partial_directory(
    local_runner: TaskRunner, tmp_path: Path
) -> None:
    save = save_batch(str(tmp_path / "batch"), None, text=True)

    def boom(x: int) -> int:
        if x == 2:
            raise RuntimeError("disk on fire")
        return x

    with pytest.raises(Exception, match="disk on fire"):
        await save(1.0, local_runner.parallelize([1, 2, 3], 2).map(boom))
    assert os.listdir(tmp_path) == []


async def test_save_as_object_files_round_trips(master: str, tmp_path: Path) -> None:
    prefix = str(tmp_path / "objects")
    batches = [[{"a": 1}, (2, [3]), None, "x"], [1.5]]
    await run_stream(
        output_then(lambda s: s.save_as_object_files(prefix)), batches,
        master=master, num_partitions=2,
    )
    for seconds, batch in enumerate(batches, start=1):
        directory = tmp_path / f"objects-{seconds * 1000}"
        parts = sorted(p for p in os.listdir(directory) if p.startswith("part-"))
        assert parts == ["part-00000", "part-00001"]
        assert (directory / "_SUCCESS").exists()
        loaded = []
        for part in parts:
            with open(directory / part, "rb") as f:
                loaded += pickle.load(f)
        assert loaded == batch


# ---- foreach_rdd ---------------------------------------------------------------------


async def test_foreach_rdd_plain_function_uses_blocking_actions(master: str) -> None:
    seen: list[Any] = []

    def plain(rdd: RDD) -> None:  # runs on a worker thread: blocking actions work
        seen.append((rdd.collect(), rdd.count(), rdd.take(1)))

    def plain_with_time(time: float, rdd: RDD) -> None:
        seen.append((time, sorted(rdd.map(lambda x: (x % 2, x)).reduceByKey(max).collect())))

    def register(s: DStream) -> None:
        s.foreach_rdd(plain)
        s.foreachRDD(plain_with_time)

    await run_stream(output_then(register), [[1, 2, 3], []], master=master)
    assert seen == [
        ([1, 2, 3], 3, [1]), (1.0, [(0, 2), (1, 3)]),
        ([], 0, []), (2.0, []),
    ]


async def test_foreach_rdd_async_function_uses_awaitable_actions(master: str) -> None:
    seen: list[Any] = []

    async def coroutine(time: float, rdd: RDD) -> None:
        seen.append((time, await rdd.acollect(), await rdd.acount(), await rdd.areduce(max)))

    class Sink:
        async def __call__(self, rdd: RDD) -> None:
            seen.append(await rdd.atake(2))

    def register(s: DStream) -> None:
        s.foreach_rdd(coroutine)
        s.foreach_rdd(Sink())

    await run_stream(output_then(register), [[4, 1, 9], [2]], master=master)
    assert seen == [(1.0, [4, 1, 9], 3, 9), [4, 1], (2.0, [2], 1, 2), [2]]


async def test_foreach_rdd_function_need_not_pickle(master: str) -> None:
    """Output functions run on the driver: they may hold a lock, a client or a pool."""
    lock = threading.Lock()
    seen: list[Any] = []

    def plain(rdd: RDD) -> None:
        with lock:
            seen.append(rdd.collect())

    async def coroutine(rdd: RDD) -> None:
        records = await rdd.acollect()
        with lock:
            seen.append(records)

    def register(s: DStream) -> None:
        s.foreach_rdd(plain)
        s.foreach_rdd(coroutine)

    await run_stream(output_then(register), [[1, 2], [3]], master=master)
    assert seen == [[1, 2], [1, 2], [3], [3]]


async def test_blocking_action_in_a_coroutine_points_to_acollect() -> None:
    errors: list[BaseException] = []

    async def wrong(rdd: RDD) -> None:
        try:
            rdd.collect()
        except ContextStateError as exc:
            errors.append(exc)
            raise

    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0)) as ssc:
        ssc.queue_stream([[1, 2]]).foreach_rdd(wrong)
        await ssc.start()
        with pytest.raises(JobFailedError):
            await advance_batches(ssc, 1)
        with pytest.raises(JobFailedError):  # stop() raises what no one has raised yet
            await ssc.stop()
    [error] = errors
    assert "await rdd.acollect()" in str(error)
    [failure] = ssc.errors
    assert isinstance(failure, JobFailedError)
    assert failure.cause is error
    assert failure.batch_time == 1.0
