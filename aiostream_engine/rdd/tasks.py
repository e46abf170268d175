"""What one task is and how a worker runs it.

A task is a ``TaskPlan``: where its input comes from (records held on the driver, or the
buckets of a shuffle to merge) and the fused chain of narrow stages to run over it. The
plan is plain data plus cloudpickled functions, so any executor backend can run it with
``execute_task``.

Consecutive per-record stages (map, flat_map, filter ...) run fused into one loop, and a
shuffle's map-side combine consumes the stages just before it in that same loop (see
``fusion``).

A failing user function must be reported naming its operator. Wrapping every stage in a
try/except generator would cost one more generator resumption per record per stage, so
stages run unwrapped and the operator is found from the traceback instead: a stage whose
function returns a generator is known by that generator's frame, a fused chain's frame by
the line it was running, and the innermost such frame the exception passed through names
the failing stage. Only stages that return lazy iterators without a Python frame
(``islice``) are wrapped.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from types import FrameType, GeneratorType
from typing import Any

import cloudpickle

from ..errors import DataNotSerializableError, OperatorError
from ..executor.block_store import BlockRef
from ..hashing import stable_hash
from .fusion import RecordStep, combine_steps, line_owners, run_steps
from .side_output import collecting, with_side

StageFunction = Callable[[int, Iterator[Any]], Iterable[Any]]

#: Which operator each stage generator's frame belongs to, for one running task.
StageFrames = dict[FrameType, str]


@dataclass(frozen=True)
class Stage:
    """One narrow operator over a partition's iterator, named for error reports.

    ``index`` is the partition of the operator's own RDD that this stage computes, bound
    when the plan is built: a task's position in the list it runs in is not it (a union's
    second side, the later chunks of ``take``). ``steps`` is set for per-record operators:
    what ``function`` applies, so that a task can fuse the stage with its neighbours.
    """

    operator: str
    function: StageFunction
    index: int | None = None
    steps: tuple[RecordStep, ...] = ()
    #: The function's output raises nothing but ``OperatorError`` (it names its operator
    #: itself), so the task iterates it as it is, without a guard around every record.
    checked: bool = False

    def at(self, index: int) -> Stage:
        return dataclasses.replace(self, index=index)


def record_stage(*steps: RecordStep) -> Stage:
    """A stage of per-record operators, run as one fused loop."""
    return Stage(steps[0].operator, partial(run_steps, steps), steps=steps)


def fuse_record_stages(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The stages with each run of consecutive per-record stages merged into one."""
    fused: list[Stage] = []
    for stage in stages:
        if stage.steps and fused and fused[-1].steps:
            fused[-1] = record_stage(*fused[-1].steps, *stage.steps)
        else:
            fused.append(stage)
    return tuple(fused)


def _frame_operator(frame: FrameType, line: int, frames: StageFrames) -> str | None:
    """The operator a traceback entry's frame was running, if it is a stage's."""
    owners = line_owners(frame.f_code)
    if owners is not None:  # a fused chain: the line it was on names the operator
        return owners.get(line)
    return frames.get(frame)


def _failing_operator(exc: BaseException, frames: StageFrames, default: str) -> str:
    """The operator of the innermost stage frame ``exc`` went through, else ``default``.

    A StopIteration escaping a user function becomes a RuntimeError raised *after* the
    generator's frame ended (PEP 479); that frame is in the StopIteration's traceback.
    """
    operator = default
    cause: BaseException | None = exc
    while cause is not None:
        tb = cause.__traceback__
        while tb is not None:
            operator = _frame_operator(tb.tb_frame, tb.tb_lineno, frames) or operator
            tb = tb.tb_next
        cause = cause.__cause__ if isinstance(cause.__cause__, StopIteration) else None
    return operator


def _operator_error(exc: Exception, frames: StageFrames, default: str) -> OperatorError:
    operator = _failing_operator(exc, frames, default)
    trace = "".join(traceback.format_exception(exc))
    return OperatorError(operator, type(exc).__name__, str(exc), trace)


def _guard(operator: str, make: Callable[[], Iterable[Any]], frames: StageFrames) -> Iterator[Any]:
    """Run a lazy iterable, turning a user exception into an OperatorError."""
    try:
        yield from make()
    except OperatorError:
        raise
    except Exception as exc:  # a user function failed: name the operator
        raise _operator_error(exc, frames, operator) from None


def _open_stage(stage: Stage, index: int, upstream: Iterable[Any], frames: StageFrames) -> Iterable[Any]:
    """Call a stage's function and note how to recognise its errors later."""
    try:
        output = stage.function(index, iter(upstream))
    except OperatorError:
        raise
    except Exception as exc:  # an eager stage (glom, a user map_partitions) failed
        raise _operator_error(exc, frames, stage.operator) from None
    if isinstance(output, GeneratorType):
        if output.gi_frame is not None:  # None: it already finished, it cannot raise
            frames[output.gi_frame] = stage.operator
        return output
    if isinstance(output, list | tuple) or stage.checked:
        return output  # already computed, or it names its own errors
    return _guard(stage.operator, lambda: output, frames)


def run_stages(
    stages: tuple[Stage, ...], index: int, records: Iterable[Any], frames: StageFrames
) -> Iterable[Any]:
    """Chain the stages over ``records``; ``frames`` learns each generator stage's frame."""
    for stage in stages:
        records = _open_stage(stage, index if stage.index is None else stage.index, records, frames)
    return records


# ---- task inputs -------------------------------------------------------------------------


class _NotFlat(Exception):
    """A record is not an atom: the flat encoding does not apply."""


class _FlatPickler(pickle.Pickler):
    """Pickles a list of atoms (exactly str, bytes, int, float, bool, None) without a memo.

    The memo (one dict entry per object, so that shared objects stay shared) is most of
    the cost of pickling a partition of small strings; atoms are immutable, so sharing
    them is not observable. ``reducer_override`` is only called for non-atom objects: the
    first one (other than the list itself) aborts the encoding.
    """

    def __init__(self, file: io.BytesIO, top: list[Any]) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.fast = True  # no memo
        self._top = top

    def reducer_override(self, obj: Any) -> Any:
        if obj is not self._top:
            raise _NotFlat
        return NotImplemented


def _flat_dumps(records: list[Any]) -> bytes | None:
    """The records as one memo-less pickle, or None if one of them is not an atom."""
    buffer = io.BytesIO()
    try:
        _FlatPickler(buffer, records).dump(records)
    except _NotFlat:
        return None
    return buffer.getvalue()


@dataclass(frozen=True)
class RecordsInput:
    """A partition whose records travel with the task."""

    records: list[Any]

    def open(self) -> Iterator[Any]:
        return iter(self.records)


@dataclass(frozen=True)
class RecordSlices:
    """A partition's records as separately pickled slices, decoded as the task reads them.

    How the process pool moves a ``RecordsInput``: the driver pickles a slice per
    event-loop turn and writes it while the worker reads the previous one, so the loop
    never stalls on one big pickle and the driver holds about one slice of bytes; the
    worker decodes a slice only when the task reaches it, and lets go of its bytes then,
    so a worker holds the partition's records once, not also its pickles. It is opened
    once (a worker decodes a fresh one per task). (Records of different slices that share
    an object arrive with a copy each.)
    """

    chunks: list[bytes]

    def open(self) -> Iterator[Any]:
        return chain.from_iterable(map(pickle.loads, _consumed(self.chunks)))


@dataclass(frozen=True, eq=False)
class SharedSlices:
    """A partition pickled once into a file of a RAM file system, slice after slice
    (``executor.shared_input``); ``sizes`` are the slices' byte counts, in order. A worker
    reads and decodes one slice at a time as the task reaches it. Compared by identity:
    each object owns its file, removed when the driver's object is collected (or with its
    directory when the backend stops)."""

    path: str
    sizes: tuple[int, ...]

    def open(self) -> Iterator[Any]:
        return chain.from_iterable(map(pickle.loads, self._slices()))

    def _slices(self) -> Iterator[bytes]:
        with open(self.path, "rb") as file:
            for size in self.sizes:
                payload = file.read(size)  # buffered: reads until size bytes or the end
                if len(payload) != size:
                    raise OSError(f"shared partition {self.path} ends early: it was changed or cut")
                yield payload


def _consumed(chunks: list[bytes]) -> Iterator[bytes]:
    """The chunks in order, each removed from the list as it is handed out."""
    chunks.reverse()
    while chunks:
        yield chunks.pop()


def dumps_slice(records: list[Any]) -> bytes:
    """One slice of a ``RecordSlices``: memo-less when the records are atoms. Raises
    ``DataNotSerializableError`` for a record that cannot be pickled."""
    flat = _flat_dumps(records)
    if flat is not None:
        return flat
    try:
        return cloudpickle.dumps(records, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # e.g. a lock or a socket among the records
        raise DataNotSerializableError("a partition's records", exc) from exc


@dataclass(frozen=True)
class PackedBucket:
    """A map task's bucket as one pickle.

    A backend that moves results between processes returns map outputs packed
    (``execute_packed``): the driver hands them on to the reduce tasks as bytes instead of
    unpickling every record and pickling it again.
    """

    payload: bytes


def _pack(bucket: list[Any]) -> PackedBucket:
    try:
        return PackedBucket(pickle.dumps(bucket, pickle.HIGHEST_PROTOCOL))
    except Exception:  # e.g. an instance of a class cloudpickle brought from the driver
        return PackedBucket(cloudpickle.dumps(bucket, pickle.HIGHEST_PROTOCOL))


def _unpacked(bucket: list[Any] | PackedBucket) -> list[Any]:
    return pickle.loads(bucket.payload) if isinstance(bucket, PackedBucket) else bucket


@dataclass(frozen=True)
class ShuffleInput:
    """One reduce-side partition: the bucket every map task produced for it, to merge."""

    buckets: list[list[Any]] | list[PackedBucket]
    merge: Callable[[list[list[Any]]], Iterable[Any]]
    operator: str

    def open(self) -> Iterator[Any]:
        return _guard(self.operator, lambda: self.merge([_unpacked(b) for b in self.buckets]), {})


@dataclass(frozen=True)
class BlockInput:
    """A cached partition, read where it lives (see ``executor.block_store``)."""

    block: BlockRef

    def open(self) -> Iterator[Any]:
        return iter(self.block.records())


class ClusterInput:
    """A partition a cluster backend holds as its own data (``executor.dask``). The backend
    hands the task the data where it runs; the object itself is never opened."""

    def open(self) -> Iterator[Any]:
        raise RuntimeError(f"{type(self).__name__} is read through its backend, not opened")


TaskInput = RecordsInput | RecordSlices | SharedSlices | ShuffleInput | BlockInput | ClusterInput


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
    """One task. ``reads`` are the blocks its stages read besides its input (a state
    partition, a window's previous result): with its input's block they place the task.
    ``store_as``: keep the output as that block where the task ran, return its length."""

    input: TaskInput
    stages: tuple[Stage, ...] = ()
    shuffle_write: ShuffleWrite | None = None
    description: str = field(default="task", compare=False)
    reads: tuple[BlockRef, ...] = ()
    store_as: BlockRef | None = None

    def then(self, stage: Stage, reads: tuple[BlockRef, ...] = ()) -> TaskPlan:
        return TaskPlan(
            self.input, (*self.stages, stage), None, self.description, (*self.reads, *reads)
        )

    def storing(self, block: BlockRef) -> TaskPlan:
        return dataclasses.replace(self, store_as=block)

    @property
    def placement(self) -> int | None:
        """The partition whose blocks this task reads or writes, if any: a backend with
        several workers runs it where that partition's blocks live. Else the input's own
        ``placement``, if it has one (a Kafka partition's worker keeps reading it ahead)."""
        if isinstance(self.input, BlockInput):
            return self.input.block.partition
        for block in (*self.reads, self.store_as):
            if block is not None:
                return block.partition
        return getattr(self.input, "placement", None)


def execute_task(plan: TaskPlan, index: int) -> list[Any]:
    """Run a task; returns its records, or its buckets when it is a shuffle map task. The
    side outputs its stages emitted ride along (a ``TaskOutput``, see ``side_output``):
    a backend returns the result object as it is."""
    with collecting() as side:
        return with_side(_execute(plan, index), side)


def _execute(plan: TaskPlan, index: int) -> list[Any]:
    frames: StageFrames = {}
    write = plan.shuffle_write
    stages = fuse_record_stages(plan.stages)
    try:
        if write is not None:
            return _write_buckets(write, index, stages, plan.input.open(), frames)
        records = list(run_stages(stages, index, plan.input.open(), frames))
        if plan.store_as is not None:
            plan.store_as.put(records)
            return [len(records)]  # the block's size: the UI shows state sizes from it
        return records
    except OperatorError:
        raise
    except Exception as exc:  # raised in no stage's frame: the shuffle's functions
        raise _operator_error(exc, frames, write.operator if write else "task") from None


def execute_packed(plan: TaskPlan, index: int) -> list[Any]:
    """``execute_task`` for a backend that moves results between processes: a shuffle map
    task's buckets come back packed (``PackedBucket``), with the task's side outputs."""
    result = execute_task(plan, index)
    if plan.shuffle_write is None:
        return result
    return with_side([_pack(bucket) for bucket in result], list(getattr(result, "side", ())))


def _write_buckets(
    write: ShuffleWrite, index: int, stages: tuple[Stage, ...], records: Iterable[Any], frames: StageFrames
) -> list[list[Any]]:
    n = write.num_partitions
    partition = write.partitioner or stable_hash
    if write.create_combiner is not None:
        return _split_distinct(_combine(write, index, stages, records, frames), n, partition)
    lists: list[list[Any]] = [[] for _ in range(n)]
    records = run_stages(stages, index, records, frames)
    if write.by_position:
        for position, record in enumerate(records, start=index):
            lists[position % n].append(record)
    else:
        for pair in records:
            lists[partition(pair[0]) % n].append(pair)
    return lists


def _combine(
    write: ShuffleWrite, index: int, stages: tuple[Stage, ...], records: Iterable[Any], frames: StageFrames
) -> dict[Any, Any]:
    """Map-side combine of the whole partition into one dict, before any hashing; the
    per-record stages just before it run in the combining loop itself."""
    steps: tuple[RecordStep, ...] = ()
    if stages and stages[-1].steps:
        stages, steps = stages[:-1], stages[-1].steps
    records = run_stages(stages, index, records, frames)
    assert write.create_combiner is not None and write.merge_value is not None
    return combine_steps(steps, records, write.create_combiner, write.merge_value)


def _split_distinct(
    combined: dict[Any, Any], n: int, partition: Callable[[Any], int]
) -> list[list[Any]]:
    """Bucket combined pairs: the partitioner runs once per distinct key, not per record.

    Within a bucket, pairs keep their first-seen order, as when combining per bucket.
    """
    if n == 1:
        return [list(combined.items())]
    lists: list[list[Any]] = [[] for _ in range(n)]
    for pair in combined.items():
        lists[partition(pair[0]) % n].append(pair)
    return lists
