"""RDDs that pair the records of two RDDs (``cartesian``, ``zip``) or number them
(``zip_with_index``).

The other side's partitions are computed on the driver when the tasks are planned and
travel with the tasks that need them (a partition of ``other`` per task), as the result of
a small job; a large ``other`` belongs in a join instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import count, product
from typing import Any

from .core import RDD
from .tasks import Stage, TaskPlan


class CartesianRDD(RDD):
    """Partition ``i * m + j`` holds every (a, b) of partition i of ``left`` and partition j
    of ``right`` (m partitions), as Spark's cartesian."""

    def __init__(self, left: RDD, right: RDD) -> None:
        super().__init__(left._runner, left.num_partitions * right.num_partitions, "cartesian")
        self._left = left
        self._right = right

    async def _uncached_plans(self) -> list[TaskPlan]:
        rights = await self._right._run(what=f"{self._right.name} (cartesian's right side)")
        lefts = await self._left._plans()
        return [
            plan.then(Stage("cartesian", _pairs_with(right)).at(i * len(rights) + j))
            for i, plan in enumerate(lefts)
            for j, right in enumerate(rights)
        ]


def _pairs_with(right: list[Any]) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    return lambda _index, left: product(left, right)


class ZippedRDD(RDD):
    """(a, b) pairs of the i-th records of two RDDs with the same partitions."""

    def __init__(self, left: RDD, right: RDD) -> None:
        if left.num_partitions != right.num_partitions:
            raise ValueError(
                f"Can only zip RDDs with the same number of partitions: {left.num_partitions} "
                f"and {right.num_partitions}"
            )
        super().__init__(left._runner, left.num_partitions, "zip")
        self._left = left
        self._right = right

    async def _uncached_plans(self) -> list[TaskPlan]:
        rights = await self._right._run(what=f"{self._right.name} (zip's right side)")
        return [
            plan.then(Stage("zip", _zip_with(right)).at(i))
            for i, (plan, right) in enumerate(zip(await self._left._plans(), rights, strict=True))
        ]


def _zip_with(right: list[Any]) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    def pairs(index: int, left: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        lefts = list(left)
        if len(lefts) != len(right):
            raise ValueError(
                f"Can only zip RDDs with the same number of elements in each partition: "
                f"partition {index} has {len(lefts)} and {len(right)}"
            )
        return zip(lefts, right, strict=True)

    return pairs


class ZipWithIndexRDD(RDD):
    """(record, index) with indices in partition order, then record order: a first job
    counts each partition (as Spark's zipWithIndex does)."""

    def __init__(self, parent: RDD) -> None:
        super().__init__(parent._runner, parent.num_partitions, "zip_with_index")
        self._parent = parent

    async def _uncached_plans(self) -> list[TaskPlan]:
        counted = self._parent.map_partitions(_count)
        sizes = [sum(part) for part in await counted._run(what=f"{self.name} (counting)")]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [
            plan.then(Stage("zip_with_index", _numbered_from(start)).at(i))
            for i, (plan, start) in enumerate(zip(await self._parent._plans(), starts, strict=True))
        ]


def _count(records: Iterator[Any]) -> list[int]:
    return [sum(1 for _ in records)]


def _numbered_from(start: int) -> Callable[[int, Iterator[Any]], Iterable[Any]]:
    return lambda _index, records: zip(records, count(start))
