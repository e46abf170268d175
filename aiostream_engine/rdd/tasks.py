"""What one task is and how a worker runs it.

A task is a ``TaskPlan``: where its input comes from (records held on the driver, or the
buckets of a shuffle to merge) and the fused chain of narrow stages to run over it. The
plan is plain data plus cloudpickled functions, so any executor backend can run it with
``execute_task``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import OperatorError
from ..hashing import stable_hash

StageFunction = Callable[[int, Iterator[Any]], Iterable[Any]]


@dataclass(frozen=True)
class Stage:
    """One narrow operator over a partition's iterator, named for error reports.

    ``index`` is the partition of the operator's own RDD that this stage computes, bound
    when the plan is built: a task's position in the list it runs in is not it (a union's
    second side, the later chunks of ``take``).
    """

    operator: str
    function: StageFunction
    index: int | None = None

    def at(self, index: int) -> Stage:
        return Stage(self.operator, self.function, index)


def _guard(operator: str, make: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """Run one stage, turning a user exception into an OperatorError naming the stage."""
    try:
        yield from make()
    except OperatorError:
        raise
    except Exception as exc:  # a user function failed: name the operator
        raise OperatorError(
            operator, type(exc).__name__, str(exc), traceback.format_exc()
        ) from None


def _stage_runner(stage: Stage, index: int, upstream: Iterator[Any]) -> Callable[[], Iterable[Any]]:
    return lambda: stage.function(index, upstream)


def run_stages(stages: tuple[Stage, ...], index: int, records: Iterator[Any]) -> Iterator[Any]:
    it: Iterator[Any] = records
    for stage in stages:
        at = index if stage.index is None else stage.index
        it = _guard(stage.operator, _stage_runner(stage, at, it))
    return it


# ---- task inputs -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordsInput:
    """A partition whose records travel with the task."""

    records: list[Any]

    def open(self) -> Iterator[Any]:
        return iter(self.records)


@dataclass(frozen=True)
class ShuffleInput:
    """One reduce-side partition: the bucket every map task produced for it, to merge."""

    buckets: list[list[Any]]
    merge: Callable[[list[list[Any]]], Iterable[Any]]
    operator: str

    def open(self) -> Iterator[Any]:
        return _guard(self.operator, lambda: self.merge(self.buckets))


TaskInput = RecordsInput | ShuffleInput


@dataclass(frozen=True)
class ShuffleWrite:
    """The map side of a shuffle: split (and optionally combine) records into buckets."""

    num_partitions: int
    operator: str
    partitioner: Callable[[Any], int] | None = None
    create_combiner: Callable[[Any], Any] | None = None
    merge_value: Callable[[Any, Any], Any] | None = None
    by_position: bool = False  # repartition: spread records round-robin, no keys


@dataclass(frozen=True)
class TaskPlan:
    input: TaskInput
    stages: tuple[Stage, ...] = ()
    shuffle_write: ShuffleWrite | None = None
    description: str = field(default="task", compare=False)

    def then(self, stage: Stage) -> TaskPlan:
        return TaskPlan(self.input, (*self.stages, stage), None, self.description)


def execute_task(plan: TaskPlan, index: int) -> list[Any]:
    """Run a task; returns its records, or its buckets when it is a shuffle map task."""
    records = run_stages(plan.stages, index, plan.input.open())
    write = plan.shuffle_write
    if write is None:
        return list(records)
    return list(_guard(write.operator, lambda: _write_buckets(write, index, records)))


def _write_buckets(write: ShuffleWrite, index: int, records: Iterator[Any]) -> list[list[Any]]:
    n = write.num_partitions
    if write.by_position:
        lists: list[list[Any]] = [[] for _ in range(n)]
        for position, record in enumerate(records, start=index):
            lists[position % n].append(record)
        return lists
    partition = write.partitioner or stable_hash
    if write.create_combiner is None:
        lists = [[] for _ in range(n)]
        for pair in records:
            lists[partition(pair[0]) % n].append(pair)
        return lists
    create, merge_value = write.create_combiner, write.merge_value
    assert merge_value is not None
    combined: list[dict[Any, Any]] = [{} for _ in range(n)]
    for key, value in records:
        bucket = combined[partition(key) % n]
        if key in bucket:
            bucket[key] = merge_value(bucket[key], value)
        else:
            bucket[key] = create(value)
    return [list(bucket.items()) for bucket in combined]
