"""The one narrow interface every executor backend implements."""

from __future__ import annotations

from typing import Any, Protocol

from ..rdd.tasks import TaskPlan


class WorkerLostError(Exception):
    """The worker running a task died; the task is retried elsewhere."""


class ExecutorBackend(Protocol):
    """Runs tasks. ``run`` must never block the event loop."""

    @property
    def cores(self) -> int:
        """Tasks the backend runs in parallel."""
        ...

    async def start(self) -> None: ...

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        """Run one task and return its output; raises the task's error."""
        ...

    async def stop(self) -> None: ...
