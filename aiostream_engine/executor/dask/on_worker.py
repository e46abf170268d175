"""What runs inside a Dask worker process.

Dask calls these functions on a worker with their dependencies' data already there (from
the worker's own memory, or fetched from the worker holding it). A task arrives as its plan,
pickled on the driver with cloudpickle, in which the data the cluster holds is named, not
carried: ``Scattered`` for an input partition, ``RemoteBucket`` for one bucket of a shuffle
map task's output. The data arrives beside it, by key; cached blocks arrive the same way and
are lent to the task (``block_store.lending``), so ``BlockRef.records()`` finds them.

Nothing here is specific to how the driver runs: any worker-side code a plan carries
(decoders, Kafka fetches, accumulators) runs here as it runs in a local[N] worker.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import Any

import cloudpickle
from dask.sizeof import sizeof
from distributed import get_worker

from ...errors import WorkerImportError
from ...rdd.side_output import SideOutput
from ...rdd.tasks import ClusterInput, RecordSlices, ShuffleInput, TaskPlan, execute_task
from ..block_store import STORE, BlockRef, lending

#: What ``run_task`` returns: the output pickled, the ids of the blocks the task stored in
#: this process, and the address of the worker it ran on.
TaskResult = tuple[bytes, list[str], str]


@dataclass(frozen=True)
class Scattered(ClusterInput):
    """An input partition the cluster holds under ``key``: its records pickled in slices."""

    key: str


@dataclass(frozen=True)
class RemoteBucket:
    """Bucket ``index`` of the shuffle map output the cluster holds under ``key``."""

    key: str


class Records:
    """Records as Dask data (a shuffle bucket, a cached block), moved in one piece.

    Dask's comms serialize a bare ``list`` element by element (msgpack comes before pickle
    in their serializers, and msgpack would turn the list into a tuple): a bucket of 5,000
    pairs went from one worker to another as 5,000 frames, in 120-140 ms here (50,000
    pairs: 2 s). Wrapped, it is one pickle (about 1 ms).
    """

    __slots__ = ("records",)

    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def __reduce__(self) -> tuple[Any, ...]:
        return Records, (self.records,)


@sizeof.register(Records)
def _sizeof_records(data: Records) -> int:
    """What Dask counts for the wrapped records (its memory limits, its transfer costs)."""
    return int(sizeof(data.records))


def _address() -> str:
    return str(get_worker().address)


def _load_plan(wire: bytes) -> TaskPlan:
    """The plan; a module its functions were pickled by reference from, and which this
    worker cannot import, is named in the error with the two ways to fix it."""
    try:
        return cloudpickle.loads(wire)
    except ImportError as exc:
        raise WorkerImportError(exc.name or str(exc), _address()) from None


def _resolved(plan: TaskPlan, inputs: dict[str, Any]) -> TaskPlan:
    """The plan with the cluster's data in place of the names of it."""
    source = plan.input
    if isinstance(source, Scattered):
        # A list of its own: reading consumes the list, not the slices the worker keeps.
        return dataclasses.replace(plan, input=RecordSlices(list(inputs[source.key])))
    if isinstance(source, ShuffleInput):
        buckets = [inputs[b.key].records if isinstance(b, RemoteBucket) else b for b in source.buckets]
        return dataclasses.replace(plan, input=dataclasses.replace(source, buckets=buckets))
    return plan


def _execute(
    wire: bytes, index: int, inputs: dict[str, Any], blocks: dict[str, Records]
) -> tuple[Any, list[str]]:
    plan = _resolved(_load_plan(wire), inputs)
    with lending({key: block.records for key, block in blocks.items()}) as written:
        try:
            return execute_task(plan, index), written
        except BaseException:
            STORE.drop(written)  # the driver never learns of them: do not keep them
            raise


def run_task(
    wire: bytes, index: int, inputs: dict[str, Any], blocks: dict[str, Records]
) -> TaskResult:
    """One task; its output goes back to the driver."""
    output, written = _execute(wire, index, inputs, blocks)
    try:
        payload = pickle.dumps(output, pickle.HIGHEST_PROTOCOL)
    except Exception:  # an instance of a class cloudpickle brought from the driver
        payload = cloudpickle.dumps(output, pickle.HIGHEST_PROTOCOL)
    return payload, written, _address()


def run_map_task(
    wire: bytes, index: int, inputs: dict[str, Any], blocks: dict[str, Records]
) -> list[list[Any]]:
    """One shuffle map task: its buckets stay on this worker (``bucket``); nothing but
    its completion reaches the driver."""
    buckets, written = _execute(wire, index, inputs, blocks)
    if written:  # the driver learns of stored blocks from run_task's result only
        STORE.drop(written)
        raise RuntimeError(f"a shuffle map task stored blocks {written}: only result tasks may")
    return buckets


def bucket(buckets: list[list[Any]], index: int) -> Records:
    return Records(buckets[index])


def side_outputs(buckets: list[list[Any]]) -> tuple[SideOutput, ...]:
    """What the map task's stages emitted (``side_output``), for the driver."""
    return tuple(getattr(buckets, "side", ()))


def publish_block(ref: BlockRef) -> Records:
    """A block a task stored in this process, handed over to the cluster as its data.

    Run again elsewhere (the worker holding the block died), it loads the block's disk
    copy: that is how cached state survives the loss of a worker.
    """
    return Records(STORE.take(ref))
