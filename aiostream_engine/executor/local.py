"""``local``: tasks run in this process.

Running a task on the event loop thread would stall receivers and the batch clock for as
long as the task takes, so tasks run on one worker thread (anyio's thread pool). That is
the only thread the engine starts itself, and only for this backend.

What a task that reads a kept partition (state, a window, ``cache()``) hands back is a
snapshot, as on every other master (where it crosses a pipe or the network pickled): it
would otherwise return the very objects the next batch's task updates in place, and a
collected ``update_state_by_key`` result would change after the fact. Its shuffle buckets
are copied too, since a reduce task passes their objects on. Other tasks' records are
new objects or the driver's own input, and are handed back as they are: copying them
tripled the time of a batch that collects 200,000 records (bench/results/local_snapshot.md).
"""

from __future__ import annotations

import pickle
from typing import Any

import anyio
import anyio.to_thread
import cloudpickle

from ..rdd.tasks import BlockInput, TaskPlan, execute_task
from .block_store import STORE, BlockRef
from .py_files import importable_here


def snapshot(records: list[Any]) -> list[Any]:
    """A deep copy made the way the other masters make one (pickling); records that do
    not pickle (a lock, a socket) cannot be copied and are handed back as they are."""
    for dumps in (pickle.dumps, cloudpickle.dumps):
        try:
            return pickle.loads(dumps(records, pickle.HIGHEST_PROTOCOL))
        except Exception:  # try the next way, then give up copying
            continue
    return records


def reads_kept_partitions(plan: TaskPlan) -> bool:
    """Whether the task reads partitions this process keeps (its input or ``reads``)."""
    return isinstance(plan.input, BlockInput) or bool(plan.reads)


def execute_detached(plan: TaskPlan, index: int) -> list[Any]:
    """``execute_task`` whose output shares no object with what the process keeps."""
    result = execute_task(plan, index)
    if not result or not reads_kept_partitions(plan):
        return result
    return snapshot(result)


class LocalBackend:
    def __init__(self, threads: int = 1) -> None:
        self._limiter = anyio.CapacityLimiter(threads)

    @property
    def cores(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def spill_dir(self) -> None:
        return None  # blocks live in this process: they die with the driver, not before

    def add_py_file(self, path: str) -> None:
        importable_here(path)  # the workers import from this process's path

    def release_blocks(self, refs: list[BlockRef]) -> None:
        STORE.drop([ref.id for ref in refs])

    async def share(self, partitions: list[list[Any]], reusable: bool) -> list[None]:
        return [None] * len(partitions)  # tasks read the records where they are, in this process

    async def place_raw_block(self, block: Any) -> Any:
        return block  # decoded in this process, from the buffer it holds

    async def start(self) -> None:
        return None

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        return await anyio.to_thread.run_sync(execute_detached, plan, index, limiter=self._limiter)

    async def stop(self) -> None:
        return None
