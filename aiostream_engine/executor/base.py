"""The one narrow interface every executor backend implements."""

from __future__ import annotations

from typing import Any, Protocol

from ..rdd.tasks import SharedSlices, TaskPlan
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

    def release_blocks(self, refs: list[BlockRef]) -> None:
        """Drop blocks no RDD holds any more. Called from finalizers: any thread, no await."""
        ...

    async def share(self, records: list[Any]) -> SharedSlices | None:
        """A parallelized partition in a form every task can read without it being sent
        again (``shared_input``); None: it travels with each task."""
        ...

    async def start(self) -> None: ...

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        """Run one task and return its output; raises the task's error."""
        ...

    async def stop(self) -> None: ...
