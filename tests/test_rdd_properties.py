"""Property tests: RDD operations equal a plain-Python reference for random data, random
partitionings of it (empty partitions included) and random shuffle partition counts.

The runners live on a background event loop (as in a blocking PySpark-style script), so
hypothesis drives plain functions that call the blocking actions. Each property runs on
``local`` with more examples and on ``local[2]`` (a process pool) with fewer.
"""

from __future__ import annotations

import operator
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_engine import StreamingConf, stable_hash
from aiostream_engine.executor.master import backend_for
from aiostream_engine.executor.runner import TaskRunner
from aiostream_engine.loop_thread import LoopThread
from aiostream_engine.rdd.core import RDD

MASTERS = {"local": 40, "local[2]": 8}  # master -> examples per property

keys = st.one_of(
    st.integers(-4, 4),
    st.sampled_from(["a", "b", "cc", "", "é"]),
    st.dates(date(2024, 1, 1), date(2024, 1, 4)),  # hashed by ``hash``: salted per process
)
values = st.integers(-50, 50)
records = st.tuples(keys, values)
partitions_of = lambda element: st.lists(st.lists(element, max_size=8), min_size=1, max_size=6)  # noqa: E731
partition_counts = st.integers(1, 6)


@pytest.fixture(scope="module")
def runners() -> Iterator[dict[str, TaskRunner]]:
    thread = LoopThread("properties")
    started = {master: TaskRunner(backend_for(master), StreamingConf()) for master in MASTERS}
    try:
        for runner in started.values():
            thread.run(runner.start())
        yield started
    finally:
        for runner in started.values():
            thread.run(runner.stop())
        thread.close()


def for_all(master: str, **strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], None]:
    """Run the decorated property now, for ``MASTERS[master]`` random examples."""

    def run(prop: Callable[..., None]) -> None:
        settings(max_examples=MASTERS[master], deadline=None, database=None)(
            given(**strategies)(prop)
        )()

    return run


def flat(parts: list[list[Any]]) -> list[Any]:
    return [x for part in parts for x in part]


def ordered(items: Any) -> list[Any]:
    """Sort mixed ints and strings (keys) deterministically."""
    return sorted(items, key=repr)


def by_key(pairs: list[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    out: defaultdict[Any, list[Any]] = defaultdict(list)
    for k, v in pairs:
        out[k].append(v)
    return out


def check_hash_placement(parts: list[list[tuple[Any, Any]]]) -> None:
    """Keys stable_hash covers sit in partition stable_hash(k) % n. (A date's place depends
    on the hash seed of the process that partitioned it, a worker's, not this one's.)"""
    n = len(parts)
    for index, part in enumerate(parts):
        assert all(stable_hash(k) % n == index for k, _ in part if not isinstance(k, date))


masters = pytest.mark.parametrize("master", list(MASTERS))


@masters
def test_reduce_by_key(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(records), n=partition_counts)
    def prop(parts: list[list[tuple[Any, int]]], n: int) -> None:
        out = runner.from_partitions(parts).reduce_by_key(operator.add, n).glom().collect()
        assert len(out) == n
        check_hash_placement(out)
        expected = {k: sum(vs) for k, vs in by_key(flat(parts)).items()}
        assert ordered(flat(out)) == ordered(expected.items())


@masters
def test_group_by_key(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(records), n=partition_counts)
    def prop(parts: list[list[tuple[Any, int]]], n: int) -> None:
        out = runner.from_partitions(parts).group_by_key(n).collect()
        got = ordered((k, sorted(vs)) for k, vs in out)
        assert got == ordered((k, sorted(vs)) for k, vs in by_key(flat(parts)).items())


def join_reference(
    left: list[tuple[Any, Any]], right: list[tuple[Any, Any]], keep_left: bool, keep_right: bool
) -> list[tuple[Any, tuple[Any, Any]]]:
    lk, rk = by_key(left), by_key(right)
    out = []
    for key in set(lk) | set(rk):
        ls = lk.get(key) or ([None] if keep_right else [])
        rs = rk.get(key) or ([None] if keep_left else [])
        out += [(key, (v, w)) for v in ls for w in rs]
    return ordered(out)


@masters
@pytest.mark.parametrize(
    ("how", "keep_left", "keep_right"),
    [("join", False, False), ("left_outer_join", True, False),
     ("right_outer_join", False, True), ("full_outer_join", True, True)],
)
def test_joins(
    runners: dict[str, TaskRunner], master: str, how: str, keep_left: bool, keep_right: bool
) -> None:
    runner = runners[master]

    @for_all(master, a=partitions_of(records), b=partitions_of(records), n=partition_counts)
    def prop(a: list[list[Any]], b: list[list[Any]], n: int) -> None:
        joined = getattr(runner.from_partitions(a), how)(runner.from_partitions(b), n)
        assert joined.num_partitions == n
        assert ordered(joined.collect()) == join_reference(flat(a), flat(b), keep_left, keep_right)


@masters
def test_cogroup(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(
        master,
        a=partitions_of(records), b=partitions_of(records), c=partitions_of(records),
        n=partition_counts,
    )
    def prop(a: list[list[Any]], b: list[list[Any]], c: list[list[Any]], n: int) -> None:
        sides = [runner.from_partitions(x) for x in (b, c)]
        out = runner.from_partitions(a).cogroup(*sides, num_partitions=n).collect()
        got = ordered((k, tuple(sorted(s) for s in groups)) for k, groups in out)
        refs = [by_key(flat(x)) for x in (a, b, c)]
        all_keys = set().union(*refs)
        assert got == ordered((k, tuple(sorted(r.get(k, [])) for r in refs)) for k in all_keys)


@masters
def test_distinct(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(keys), n=partition_counts)
    def prop(parts: list[list[Any]], n: int) -> None:
        assert ordered(runner.from_partitions(parts).distinct(n).collect()) == ordered(set(flat(parts)))


@masters
def test_count_by_value(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(keys))
    def prop(parts: list[list[Any]]) -> None:
        assert dict(runner.from_partitions(parts).count_by_value()) == Counter(flat(parts))


@masters
def test_partition_by(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(records), n=partition_counts)
    def prop(parts: list[list[Any]], n: int) -> None:
        out = runner.from_partitions(parts).partition_by(n).glom().collect()
        assert len(out) == n
        check_hash_placement(out)
        assert Counter(flat(out)) == Counter(flat(parts))


@masters
def test_repartition(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(values), n=partition_counts)
    def prop(parts: list[list[int]], n: int) -> None:
        out = runner.from_partitions(parts).repartition(n).glom().collect()
        assert len(out) == n
        assert Counter(flat(out)) == Counter(flat(parts))


@masters
def test_union(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, a=partitions_of(values), b=partitions_of(values))
    def prop(a: list[list[int]], b: list[list[int]]) -> None:
        union: RDD = runner.from_partitions(a).union(runner.from_partitions(b))
        assert union.num_partitions == len(a) + len(b)
        assert union.glom().collect() == a + b
        assert union.collect() == flat(a) + flat(b)
        assert union.count() == len(flat(a)) + len(flat(b))


@masters
def test_narrow_chain_and_take(runners: dict[str, TaskRunner], master: str) -> None:
    runner = runners[master]

    @for_all(master, parts=partitions_of(values), num=st.integers(0, 30))
    def prop(parts: list[list[int]], num: int) -> None:
        rdd = runner.from_partitions(parts).map(lambda x: x * 3).filter(lambda x: x % 2 == 0)
        expected = [x * 3 for x in flat(parts) if (x * 3) % 2 == 0]
        assert rdd.collect() == expected
        assert rdd.take(num) == expected[:num]
        assert rdd.count() == len(expected)
