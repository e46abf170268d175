"""Counts of task attempts, kept by the task runner for the whole run and for the output
operation the tasks work for (the UI's batch page and /metrics read them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class TaskCounts:
    """Task attempts; a task that fails and runs again counts one failed attempt and one
    retry; one that fails every attempt (``task_max_failures``) counts as failed."""

    succeeded: int = 0
    failed_attempts: int = 0
    retries: int = 0
    failed: int = 0
    #: Failed attempts whose worker died (the backend replaces it: a worker restart).
    workers_lost: int = 0


#: The counts of the output operation whose job is running in this context (the job
#: scheduler sets it around a job; tasks started by the job inherit it).
current_operation_counts: ContextVar[TaskCounts | None] = ContextVar(
    "current_operation_counts", default=None
)


@contextmanager
def counting_for(counts: TaskCounts) -> Iterator[None]:
    """Within this block, tasks also count into ``counts``."""
    token = current_operation_counts.set(counts)
    try:
        yield
    finally:
        current_operation_counts.reset(token)
