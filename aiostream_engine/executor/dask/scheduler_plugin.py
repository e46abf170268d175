"""Runs inside the Dask scheduler: tasks that may run elsewhere are not left waiting for a
worker that is gone.

The backend names the worker a task should run on (where the blocks it reads live) and
allows any other worker (``allow_other_workers``). When the named worker dies, Dask runs
such a task elsewhere, unless no worker at all is running at that moment (the only worker
restarting, or all of them lost at once): the task then waits in the "no-worker" state, and
when a worker joins, Dask schedules only the waiting tasks that the new worker satisfies
by name (``Scheduler.bulk_schedule_unrunnable_after_adding_worker``), never the loosely
restricted ones, so those wait for ever and the batch hangs (the class of problem of
dask/distributed issues 7346 and 8600). Measured: killing the only worker between batches
of a stateful job hung it without this plugin (tests/test_dask.py).
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class ReviveLooseTasks(SchedulerPlugin):
    """When a worker joins, every waiting task whose named workers are all gone and that
    may run on any worker drops its restriction, so that Dask schedules it as it schedules
    any task without one (on this worker once it runs)."""

    name = "aiostream-revive-loose-tasks"
    idempotent = True  # one per scheduler, however many contexts connect

    def add_worker(self, scheduler: Any, worker: str) -> None:
        for ts in scheduler.unrunnable:
            if ts.loose_restrictions and not scheduler.valid_workers(ts):
                ts.worker_restrictions = None
                ts.loose_restrictions = False
