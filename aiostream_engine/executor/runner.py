"""TaskRunner: runs an RDD's tasks on the backend, with retries and a bound on tasks in flight.

It is also what PySpark calls the SparkContext for RDDs: ``parallelize`` and ``empty_rdd``
build RDDs, and ``run_sync`` lets blocking code (a plain ``foreach_rdd`` function on a
worker thread, or a script's main thread) run an action on the engine's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..conf import StreamingConf
from ..errors import (
    ClusterUnavailableError,
    ContextStateError,
    DataNotSerializableError,
    TaskFailedError,
)
from ..rdd.core import RDD, ParallelCollectionRDD
from ..rdd.side_output import SideChannels
from ..rdd.tasks import TaskPlan
from ..variables.accumulator import Accumulator, AccumulatorParam, AddingParam
from ..variables.broadcast import Broadcast
from .base import ExecutorBackend, WorkerLostError
from .block_store import CachedBlocks, new_block_refs
from .py_files import checked_py_file
from .task_counts import TaskCounts, current_operation_counts

T = TypeVar("T")


def _block_prefix(name: str) -> str:
    """A file-name-safe hint of the RDD's name, for people looking at a spill directory."""
    return "".join(c if c.isalnum() else "_" for c in name)[:24] or "rdd"


class TaskRunner:
    """Runs tasks on an executor backend and builds RDDs (PySpark's SparkContext role)."""

    # PySpark's names, written by `python scripts/aliases.py --update` from aliases.ALIASES
    if TYPE_CHECKING:
        emptyRDD: Callable[..., RDD]
    # end of PySpark's names

    def __init__(self, backend: ExecutorBackend, conf: StreamingConf) -> None:
        self.backend = backend
        self.conf = conf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._in_flight = anyio.Semaphore(self._task_limit())
        #: Task attempts of the whole run (per output operation: ``OutputOperationInfo.tasks``).
        self.counts = TaskCounts()
        #: Where the side outputs of tasks go (e.g. a decode stage's dead letters).
        self.side_channels = SideChannels()

    @property
    def tasks_run(self) -> int:
        return self.counts.succeeded

    @property
    def task_failures(self) -> int:
        """Failed attempts (each retried, or the last one failing its job)."""
        return self.counts.failed_attempts

    @property
    def default_parallelism(self) -> int:
        return self.conf.default_parallelism or self.backend.cores

    def _task_limit(self) -> int:
        return self.conf.max_concurrent_tasks or 2 * self.backend.cores

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        await self.backend.start()
        # A cluster's cores are known once connected.
        self._in_flight = anyio.Semaphore(self._task_limit())

    async def stop(self) -> None:
        await self.backend.stop()

    # ---- RDD construction ---------------------------------------------------------------

    def parallelize(self, data: Iterable[Any], num_slices: int | None = None) -> RDD:
        """An RDD of ``data``, for any number of jobs: on local[N] its partitions are pickled
        once, on first use, and read by every task from shared memory (``shared_input``)."""
        partitions = _split(data, num_slices or self.default_parallelism)
        return ParallelCollectionRDD(self, partitions, reusable=True)

    def parallelize_once(self, data: Iterable[Any], num_slices: int | None = None) -> RDD:
        """An RDD of ``data`` that one job reads (a queue item given as a list, an initial
        state): its partitions travel with their tasks, and nothing is kept for later."""
        return ParallelCollectionRDD(self, _split(data, num_slices or self.default_parallelism))

    def from_partitions(self, partitions: list[list[Any]], name: str = "input") -> RDD:
        return ParallelCollectionRDD(self, partitions, name)

    def add_py_file(self, path: str) -> None:
        """Ship a ``.py`` file or a ``.zip`` / ``.egg`` of packages to every worker, for the
        job's functions to import there (Spark's ``addPyFile``); before start."""
        if self._loop is not None:
            raise ContextStateError("add_py_file must be called before the context starts")
        self.backend.add_py_file(checked_py_file(path))

    def new_blocks(self, count: int, name: str) -> CachedBlocks:
        """Refs for the ``count`` partitions of a cached RDD, released with the object."""
        refs = new_block_refs(count, self.backend.spill_dir, _block_prefix(name))
        return CachedBlocks(refs, self.backend.release_blocks)

    async def store(
        self, plans: list[TaskPlan], name: str, blocks: CachedBlocks | None = None
    ) -> CachedBlocks:
        """Run the plans keeping partition i as block i where its task ran."""
        blocks = blocks or self.new_blocks(len(plans), name)
        stored = [plan.storing(ref) for plan, ref in zip(plans, blocks.refs, strict=True)]
        sizes = await self.run_tasks(stored, f"{name} (cache)")
        blocks.sizes = [size[0] for size in sizes]
        return blocks

    def empty_rdd(self) -> RDD:
        """An RDD with no partitions."""
        return ParallelCollectionRDD(self, [], "empty")

    # ---- shared variables ---------------------------------------------------------------

    def broadcast(self, value: T) -> Broadcast[T]:
        """A read-only value for tasks (``b.value``), pickled once here."""
        return Broadcast(value)

    def accumulator(self, value: T, accum_param: AccumulatorParam[T] | None = None) -> Accumulator[T]:
        """A value tasks add to (``acc.add(x)``) and the driver reads (``acc.value``);
        ``accum_param`` says how values add up (default: ``+``)."""
        return Accumulator(value, accum_param or AddingParam(), self.side_channels)
    # ---- running tasks ------------------------------------------------------------------

    async def run_tasks(self, plans: list[TaskPlan], description: str) -> list[list[Any]]:
        """Run every plan (partition i is plans[i]) and return their outputs in order."""
        if not plans:
            return []
        if len(plans) == 1:
            return [await self._run_with_retries(plans[0], 0, description)]
        results: list[list[Any]] = [[] for _ in plans]
        failure: list[BaseException] = []

        async def run_one(i: int, scope: anyio.CancelScope) -> None:
            try:
                results[i] = await self._run_with_retries(plans[i], i, description)
            except Exception as exc:  # first failure cancels the rest, then surfaces as is
                failure.append(exc)
                scope.cancel()

        async with anyio.create_task_group() as tg:
            for i in range(len(plans)):
                tg.start_soon(run_one, i, tg.cancel_scope)
        if failure:
            raise failure[0]
        return results

    async def _run_with_retries(self, plan: TaskPlan, index: int, description: str) -> list[Any]:
        attempts = self.conf.task_max_failures
        counts = [self.counts, *filter(None, [current_operation_counts.get()])]
        last: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                _count(counts, "retries")
            try:
                async with self._in_flight:
                    result = await self.backend.run(plan, index)
                _count(counts, "succeeded")
                self.side_channels.deliver(result)
                return result
            except (DataNotSerializableError, ClusterUnavailableError):  # no retry can help
                _count(counts, "failed_attempts", "failed")
                raise
            except Exception as exc:  # every other task error is retried, then reported
                _count(counts, "failed_attempts")
                if isinstance(exc, WorkerLostError):
                    _count(counts, "workers_lost")
                last = exc
        assert last is not None
        _count(counts, "failed")
        raise TaskFailedError(f"task {index} of {description}", attempts, last) from last

    # ---- blocking bridge ----------------------------------------------------------------

    def run_sync(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run an async action from blocking code; refuses on the event loop itself."""
        if self._loop is None or self._loop.is_closed():
            coroutine.close()
            raise ContextStateError("the streaming context is not running")
        if threading.get_ident() == self._loop_thread:
            coroutine.close()
            raise ContextStateError(
                "a blocking RDD action was called on the event loop; in async code use the "
                "awaitable form (await rdd.acollect(), acount(), atake(), ...)"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


def _count(counts: list[TaskCounts], *names: str) -> None:
    for c in counts:
        for name in names:
            setattr(c, name, getattr(c, name) + 1)


def _split(data: Iterable[Any], num_slices: int) -> list[list[Any]]:
    """``data`` in ``num_slices`` contiguous partitions whose sizes differ by at most one."""
    items = list(data)
    n = max(1, num_slices)
    size, extra = divmod(len(items), n)
    partitions, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        partitions.append(items[start:end])
        start = end
    return partitions
