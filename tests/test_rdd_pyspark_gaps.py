"""The RDD methods ported PySpark code reaches for, against plain Python: cartesian, zip,
zipWithIndex, sample, takeSample, top, max/min/sum/mean/stats, aggregate, fold, lookup,
keys/values, saveAsTextFile, and RDD[T] / DStream[T] in annotations."""

from __future__ import annotations

import gzip
import math
import statistics
from operator import add
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import RDD, DStream
from aiostream_engine.executor.runner import TaskRunner
from tests.blocking_actions import on_master

MASTERS = ["local", "local[2]"]


@pytest.mark.parametrize("master", MASTERS)
def test_pairing_operations(master: str) -> None:
    def body(sc: TaskRunner) -> dict[str, Any]:
        a = sc.parallelize([1, 2, 3], 2)
        b = sc.parallelize(["x", "y"], 2)
        return {
            "cartesian": a.cartesian(b).collect(),
            "partitions": a.cartesian(b).getNumPartitions(),
            "zip": a.zip(sc.parallelize([10, 20, 30], 2)).collect(),
            "zip_with_index": sc.parallelize("abcde", 3).zipWithIndex().collect(),
        }

    got = on_master(master, body)
    # Spark's order: partition (i, j) of [1, 2] | [3] times [x] | [y], in turn
    assert got["cartesian"] == [(1, "x"), (2, "x"), (1, "y"), (2, "y"), (3, "x"), (3, "y")]
    assert got["partitions"] == 4
    assert got["zip"] == [(1, 10), (2, 20), (3, 30)]
    assert got["zip_with_index"] == [(c, i) for i, c in enumerate("abcde")]


def test_zip_refuses_rdds_that_do_not_line_up() -> None:
    def body(sc: TaskRunner) -> list[str]:
        errors = []
        for other in (sc.parallelize([1, 2, 3], 3), sc.parallelize([1, 2, 3, 4], 2)):
            try:
                sc.parallelize([1, 2, 3], 2).zip(other).collect()
            except Exception as exc:
                errors.append(str(exc))
        return errors

    partitions, elements = on_master("local", body)
    assert "same number of partitions" in partitions
    assert "same number of elements in each partition" in elements


@pytest.mark.parametrize("master", MASTERS)
def test_sample_is_reproducible_and_has_the_expected_size(master: str) -> None:
    def body(sc: TaskRunner) -> dict[str, Any]:
        data = sc.parallelize(range(4000), 4)
        return {
            "without": data.sample(False, 0.25, seed=7).collect(),
            "again": data.sample(False, 0.25, seed=7).collect(),
            "other": data.sample(False, 0.25, seed=8).collect(),
            "with": data.sample(True, 0.5, seed=3).collect(),
            "take": data.takeSample(False, 10, seed=5),
            "take_again": data.takeSample(False, 10, seed=5),
            "take_all": sc.parallelize(range(5)).takeSample(False, 20, seed=1),
            "take_repl": sc.parallelize(range(3)).takeSample(True, 8, seed=2),
        }

    got = on_master(master, body)
    assert got["without"] == got["again"] != got["other"]
    assert sorted(set(got["without"])) == got["without"]  # a subset, in order, no repeats
    assert 800 < len(got["without"]) < 1200  # 1000 expected (5 standard deviations: 137)
    assert 1700 < len(got["with"]) < 2300 and len(set(got["with"])) < len(got["with"])
    assert got["take"] == got["take_again"] and len(set(got["take"])) == 10
    assert all(0 <= x < 4000 for x in got["take"])
    assert sorted(got["take_all"]) == [0, 1, 2, 3, 4]
    assert len(got["take_repl"]) == 8 and set(got["take_repl"]) <= {0, 1, 2}
    with pytest.raises(ValueError, match="fraction"):
        on_master("local", lambda sc: sc.parallelize([1]).sample(False, 1.5))


@pytest.mark.parametrize("master", MASTERS)
def test_numeric_actions_match_the_statistics_module(master: str) -> None:
    values = [3.5, -1.0, 7.25, 0.0, 2.0, 9.5, -4.75]

    def body(sc: TaskRunner) -> dict[str, Any]:
        rdd = sc.parallelize(values, 3)
        stats = rdd.stats()
        return {
            "max": rdd.max(), "min": rdd.min(), "sum": rdd.sum(), "mean": rdd.mean(),
            "variance": rdd.variance(), "stdev": rdd.stdev(), "count": stats.count(),
            "sample_variance": stats.sampleVariance(), "as_dict": stats.asDict(),
            "max_by_key": sc.parallelize(["bb", "a", "ccc"]).max(key=len),
            "min_by_key": sc.parallelize(["bb", "a", "ccc"]).min(key=len),
            "top": sc.parallelize(values, 3).top(3),
            "empty_mean": sc.parallelize([]).mean(),
        }

    got = on_master(master, body)
    assert (got["max"], got["min"], got["count"]) == (9.5, -4.75, 7)
    assert got["sum"] == pytest.approx(sum(values))
    assert got["mean"] == pytest.approx(statistics.fmean(values))
    assert got["variance"] == pytest.approx(statistics.pvariance(values))
    assert got["stdev"] == pytest.approx(statistics.pstdev(values))
    assert got["sample_variance"] == pytest.approx(statistics.variance(values))
    assert got["as_dict"]["mean"] == pytest.approx(statistics.fmean(values))
    assert (got["max_by_key"], got["min_by_key"]) == ("ccc", "a")
    assert got["top"] == sorted(values, reverse=True)[:3]
    assert math.isnan(got["empty_mean"])
    with pytest.raises(ValueError):
        on_master("local", lambda sc: sc.parallelize([]).max())


@pytest.mark.parametrize("master", MASTERS)
def test_aggregate_fold_and_lookup(master: str) -> None:
    def seq(acc: list[int], x: int) -> list[int]:
        acc.append(x)  # updates the zero value in place, which Spark allows
        return acc

    def body(sc: TaskRunner) -> dict[str, Any]:
        rdd = sc.parallelize(range(1, 7), 3)
        pairs = sc.parallelize([("a", 1), ("b", 2), ("a", 3)], 2)
        return {
            "aggregate": rdd.aggregate((0, 0), lambda acc, x: (acc[0] + x, acc[1] + 1),
                                       lambda a, b: (a[0] + b[0], a[1] + b[1])),
            "collected": sorted(rdd.aggregate([], seq, lambda a, b: a + b)),
            "fold": rdd.fold(0, add),
            "fold_lists": sorted(rdd.map(lambda x: [x]).fold([], lambda a, b: a + b)),
            "lookup": sorted(pairs.lookup("a")), "missing": pairs.lookup("z"),
            "keys": pairs.keys().collect(), "values": pairs.values().collect(),
        }

    got = on_master(master, body)
    assert got["aggregate"] == (21, 6)
    assert got["collected"] == [1, 2, 3, 4, 5, 6]
    assert got["fold"] == 21 and got["fold_lists"] == [1, 2, 3, 4, 5, 6]
    assert (got["lookup"], got["missing"]) == ([1, 3], [])
    assert (got["keys"], got["values"]) == (["a", "b", "a"], [1, 2, 3])


@pytest.mark.parametrize("master", MASTERS)
def test_save_as_text_file(master: str, tmp_path: Path) -> None:
    out, zipped = tmp_path / "out", tmp_path / "zipped"

    def body(sc: TaskRunner) -> str:
        sc.parallelize(["a", 1, ("b", 2)], 2).saveAsTextFile(str(out))
        sc.parallelize(["x", "y"], 1).saveAsTextFile(
            str(zipped), "org.apache.hadoop.io.compress.GzipCodec"
        )
        try:
            sc.parallelize(["again"]).saveAsTextFile(str(out))
        except FileExistsError as exc:
            return str(exc)
        return "no error"

    assert "already exists" in on_master(master, body)
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "part-00000", "part-00001"]
    lines = (out / "part-00000").read_text() + (out / "part-00001").read_text()
    assert lines == "a\n1\n('b', 2)\n"
    assert gzip.decompress((zipped / "part-00000.gz").read_bytes()) == b"x\ny\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_rdd_and_dstream_are_subscriptable_for_annotations() -> None:
    def words(lines: DStream[str]) -> DStream[tuple[str, int]]:
        return lines.flatMap(str.split).map(lambda w: (w, 1))

    def total(rdd: RDD[int]) -> int:
        return rdd.sum()

    assert RDD[int].__origin__ is RDD and DStream[str].__origin__ is DStream  # type: ignore[attr-defined]
    assert callable(words) and callable(total)
