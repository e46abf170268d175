"""The wheel ships sources/ and sinks/ as aiostream_engine.sources / .sinks."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_imports_connector_packages() -> None:
    import aiostream_engine.sinks
    import aiostream_engine.sources.queue

    assert Path(aiostream_engine.sources.queue.__file__).parent == ROOT / "sources"
    assert Path(aiostream_engine.sinks.__file__).parent == ROOT / "sinks"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, once for this module's tests."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = dist.glob("aiostream_engine-*.whl")
    return built


def test_built_wheel_contains_and_imports_connector_packages(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "aiostream_engine/sources/queue.py" in names
    assert "aiostream_engine/sinks/__init__.py" in names
    assert "aiostream_engine/executor/worker.py" in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import aiostream_engine.sources.queue as q, aiostream_engine.sinks as s; "
         "print(q.__file__); print(s.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)}, check=True,
    )
    assert all(line.startswith(str(target)) for line in probe.stdout.splitlines())


USER_SCRIPT = """
from __future__ import annotations

import operator
from datetime import datetime

import anyio

from aiostream_engine import RDD, DStream, ManualClock, StateSpec, StreamingConf, StreamingContext
from aiostream_engine.pyspark import SparkConf, SparkContext, StorageLevel
from aiostream_engine.pyspark.streaming import StreamingContext as PySparkStreamingContext
from aiostream_engine.pyspark.streaming import StreamingListener
from aiostream_engine.sinks import FileSink
from aiostream_engine.testing import advance_batches, collect_batches, run_stream


def words(lines: DStream[str]) -> DStream[tuple[str, int]]:
    return lines.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)


async def pipeline() -> list[float]:
    async with StreamingContext(1.0, master="local", clock=ManualClock()) as ssc:
        counts = words(ssc.queue_stream([["a b a"]]))
        out = collect_batches(counts)
        counts.write_to(FileSink("/tmp/out"))
        await ssc.start()
        infos = await advance_batches(ssc, 1)
        await ssc.stop(graceful=True)
    assert out and await run_stream(words, [["a"]]) == [[("a", 1)]]
    return [info.batch_time for info in infos]


class Printer(StreamingListener):
    def onBatchCompleted(self, batchCompleted: object) -> None:
        print(batchCompleted)


def total(rdd: RDD[int]) -> int:
    return int(rdd.sum())


def ported() -> None:
    conf = SparkConf().setMaster("local[2]").setAppName("typed")
    sc = SparkContext(conf=conf)
    ssc = PySparkStreamingContext(sc, 1)
    ssc.addStreamingListener(Printer())
    lines = ssc.socketTextStream("localhost", 9999, StorageLevel.MEMORY_AND_DISK)
    counts = lines.flatMap(lambda line: line.split(" ")).map(lambda w: (w, 1))
    windowed = counts.reduceByKeyAndWindow(operator.add, operator.sub, 30, 10, filterFunc=None)
    state = counts.updateStateByKey(lambda new, old: sum(new) + (old or 0))
    state.pprint()
    windowed.mapWithState(StateSpec(lambda k, v, s: k)).stateSnapshots().pprint()

    def show(time: datetime, rdd: RDD[tuple[str, int]]) -> None:
        print(time, rdd.collect(), total(rdd.map(lambda kv: kv[1])))

    windowed.foreachRDD(show)
    ssc.checkpoint("/tmp/checkpoint")
    ssc.start()
    if not ssc.awaitTermination(10):
        ssc.stop(stopSparkContext=True, stopGraceFully=True)
    broadcast = sc.broadcast({"a": 1})
    acc = sc.accumulator(0)
    sc.parallelize([1, 2]).foreach(lambda x: acc.add(broadcast.value["a"] * x))
    print(acc.value, sc.textFile("/tmp/*.txt").count(), StreamingConf().block_interval)


if __name__ == "__main__":
    anyio.run(pipeline)
    ported()
"""


def test_mypy_checks_a_user_script_against_the_installed_package(wheel: Path, tmp_path: Path) -> None:
    """py.typed ships in the wheel: mypy reads the package's types (no import-untyped) and a
    script using the public API, async and PySpark style, type-checks cleanly."""
    assert "aiostream_engine/py.typed" in zipfile.ZipFile(wheel).namelist()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = tmp_path / "user_job.py"
    script.write_text(USER_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--python-version", "3.11",
         str(script)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
