"""``local``: tasks run in this process.

Running a task on the event loop thread would stall receivers and the batch clock for as
long as the task takes, so tasks run on one worker thread (anyio's thread pool). That is
the only thread the engine starts itself, and only for this backend.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from ..rdd.tasks import TaskPlan, execute_task
from .block_store import STORE, BlockRef


class LocalBackend:
    def __init__(self, threads: int = 1) -> None:
        self._limiter = anyio.CapacityLimiter(threads)

    @property
    def cores(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def spill_dir(self) -> None:
        return None  # blocks live in this process: they die with the driver, not before

    def release_blocks(self, refs: list[BlockRef]) -> None:
        STORE.drop([ref.id for ref in refs])

    async def share(self, records: list[Any]) -> None:
        return None  # tasks read the records where they are, in this process

    async def start(self) -> None:
        return None

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        return await anyio.to_thread.run_sync(execute_task, plan, index, limiter=self._limiter)

    async def stop(self) -> None:
        return None
