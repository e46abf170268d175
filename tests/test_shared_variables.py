"""Broadcasts and accumulators wherever tasks run (in process, worker processes, a Dask
cluster): tasks read ``b.value``, add to accumulators, and a retried task counts once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.variables.accumulator import AccumulatorParam
from aiostream_engine.variables.broadcast import Broadcast
from tests.blocking_actions import on_master
from tests.masters import MASTERS


@pytest.mark.parametrize("master", MASTERS, indirect=True)
def test_tasks_read_broadcasts_and_add_to_accumulators(master: str) -> None:
    def body(sc: TaskRunner) -> dict[str, Any]:
        names = sc.broadcast({1: "one", 2: "two", 3: "three"})
        seen = sc.accumulator(0)
        total = sc.accumulator(0.0)
        words = sc.accumulator([])

        def label(x: int) -> str:
            seen.add(1)
            total.add(x / 2)
            words.add([names.value[x]])
            return names.value[x]

        labelled = sc.parallelize([1, 2, 3, 1, 2], 3).map(label).collect()
        return {"labelled": labelled, "seen": seen.value, "total": total.value,
                "words": sorted(words.value)}

    got = on_master(master, body)
    assert got["labelled"] == ["one", "two", "three", "one", "two"]
    assert (got["seen"], got["total"]) == (5, 4.5)
    assert got["words"] == ["one", "one", "three", "two", "two"]


@pytest.mark.parametrize("master", MASTERS, indirect=True)
def test_a_retried_task_adds_once(master: str, tmp_path: Path) -> None:
    """Each partition's first attempt adds to the accumulator and then fails; the retry
    succeeds. Only the successful attempts' additions count."""
    marker = tmp_path / "attempts"
    marker.mkdir()

    def body(sc: TaskRunner) -> tuple[int, int]:
        counted = sc.accumulator(0)

        def flaky(index: int, records: Any) -> Any:
            items = list(records)
            for _ in items:
                counted.add(1)
            attempt = marker / f"partition-{index}"
            if not attempt.exists():
                attempt.write_text("failed once")
                raise RuntimeError("first attempt fails")
            return items

        out = sc.parallelize(range(10), 2).mapPartitionsWithIndex(flaky).count()
        return out, counted.value

    assert on_master(master, body) == (10, 10)


def test_driver_side_additions_and_a_custom_param() -> None:
    class MaxParam(AccumulatorParam[int]):
        def zero(self, value: int) -> int:
            return -(10**9)

        def addInPlace(self, value1: int, value2: int) -> int:
            return max(value1, value2)

    def body(sc: TaskRunner) -> tuple[int, int]:
        biggest = sc.accumulator(0, MaxParam())
        sc.parallelize([4, 17, 9], 3).foreach(lambda x: biggest.add(x))
        driver = sc.accumulator(1)
        driver += 5  # on the driver: straight to the value
        return biggest.value, driver.value

    assert on_master("local[2]", body) == (17, 6)


def test_accumulator_value_is_for_the_driver_only() -> None:
    def body(sc: TaskRunner) -> str:
        acc = sc.accumulator(0)
        try:
            sc.parallelize([1]).map(lambda x: acc.value).collect()
        except Exception as exc:
            return str(exc)
        return "no error"

    assert "cannot be accessed inside tasks" in on_master("local", body)


def test_a_destroyed_broadcast_cannot_be_used_and_unpicklable_values_are_refused() -> None:
    import threading

    from aiostream_engine import NotSerializableError

    def body(sc: TaskRunner) -> str:
        table = sc.broadcast([1, 2])
        table.destroy()
        try:
            return str(table.value)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "destroyed" in on_master("local", body)
    with pytest.raises(NotSerializableError, match="broadcast"):
        Broadcast(threading.Lock())


@pytest.mark.parametrize("master", ["local", "local[2]"])
def test_broadcasts_and_accumulators_in_a_stream(master: str) -> None:
    """foreachRDD (on the driver) and the stream's tasks share them, batch after batch."""

    async def main() -> tuple[list[list[str]], int]:
        async with StreamingContext(1.0, master=master, clock=ManualClock()) as ssc:
            sc = ssc.spark_context
            stop_words = sc.broadcast({"a", "the"})
            dropped = sc.accumulator(0)

            def keep(word: str) -> bool:
                if word in stop_words.value:
                    dropped.add(1)
                    return False
                return True

            out: list[list[str]] = []

            async def collect(rdd: Any) -> None:
                out.append(await rdd.acollect())

            lines = ssc.queue_stream([["a cat sat"], ["the dog", "a log"]])
            lines.flat_map(str.split).filter(keep).foreach_rdd(collect)
            await ssc.start()
            from aiostream_engine.testing import advance_batches

            await advance_batches(ssc, 2)
            await ssc.stop()
            return out, dropped.value

    out, dropped = anyio.run(main)
    assert out == [["cat", "sat"], ["dog", "log"]] and dropped == 3
