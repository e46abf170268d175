"""The one narrow interface every executor backend implements."""

from __future__ import annotations

from typing import Any, Protocol

from ..rdd.tasks import TaskInput, TaskPlan
from .block_store import BlockRef


class WorkerLostError(Exception):
    """The worker running a task died; the task is retried elsewhere."""


class ExecutorBackend(Protocol):
    """Runs tasks. ``run`` must never block the event loop."""

    @property
    def cores(self) -> int:
        """Tasks the backend runs in parallel."""
        ...

    @property
    def spill_dir(self) -> str | None:
        """Where blocks get a disk copy (None: memory only; see ``block_store``)."""
        ...

    def add_py_file(self, path: str) -> None:
        """Make the module file or archive ``path`` (checked, absolute) importable by every
        task from start on (``py_files``). Called before ``start``."""
        ...

    def release_blocks(self, refs: list[BlockRef]) -> None:
        """Drop blocks no RDD holds any more. Called from finalizers: any thread, no await."""
        ...

    async def share(self, partitions: list[list[Any]], reusable: bool) -> list[TaskInput | None]:
        """Each partition of a driver-side RDD in a form every task can read without it
        being sent again (``shared_input``, a cluster's scattered data), or None where it
        travels with each task. ``reusable``: many jobs may read it (``parallelize``)."""
        ...

    async def place_raw_block(self, block: Any) -> Any:
        """A raw block a receiver just stored (``aiostream_engine.raw``), in the form its
        tasks will read it: its buffer moved to where the workers read it in place
        (``shared_input`` under ``local[N]``), or the block as it is."""
        ...

    async def start(self) -> None: ...

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        """Run one task and return its output; raises the task's error.

        A shuffle map task's output is its buckets, each in whatever form this backend's
        ``ShuffleInput`` reads (records, ``PackedBucket``, a reference to a bucket kept on
        a worker): the driver only hands them on to the reduce tasks.
        """
        ...

    async def stop(self) -> None: ...
