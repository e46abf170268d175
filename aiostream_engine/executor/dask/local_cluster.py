"""``dask-local[N]``: a ``distributed.LocalCluster`` of N worker processes on this machine.

The scheduler runs in this process, on the engine's event loop; each worker is a
``dask worker`` process (with its nanny, which restarts it if it dies), started the way a
user starts one on a cluster node. Why not LocalCluster's own worker processes: they are
started with multiprocessing's spawn, which runs the user's main module again in every
worker, so a PySpark-style script without an ``if __name__ == "__main__"`` guard would
run twice per worker (the process pool avoids the same trap, see ``process_pool``).

Workers get the driver's import path, so what the driver imports from its own files
(a script's sibling modules, a test suite) imports there too, and one hash seed, so keys
that fall back to ``hash`` land in one partition everywhere (as local[N] does). A worker
whose scheduler disappears (the driver was killed) stops after ``DEATH_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import anyio
from distributed import LocalCluster
from distributed.deploy.spec import ProcessInterface

from ..worker_env import worker_environment

#: Seconds a worker waits for a vanished scheduler before it stops.
DEATH_TIMEOUT = 10


class WorkerProcess(ProcessInterface):
    """One ``dask worker`` process, as LocalCluster's worker class."""

    def __init__(
        self,
        scheduler: str,
        name: Any = None,
        nthreads: int = 1,
        memory_limit: Any = "auto",
        **_unused: Any,  # LocalCluster's options for in-process workers (dashboard, ...)
    ) -> None:
        super().__init__()
        self._scheduler = scheduler
        self.name = name
        self._nthreads = nthreads
        self._memory_limit = memory_limit
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The nanny's pid (the worker process is its child)."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "distributed.cli.dask_worker", self._scheduler,
            "--name", str(self.name),
            "--nthreads", str(self._nthreads),
            "--memory-limit", str(self._memory_limit),
            "--host", "127.0.0.1",
            "--no-dashboard",
            "--death-timeout", str(DEATH_TIMEOUT),
            stdin=asyncio.subprocess.DEVNULL,
            env={**worker_environment(), "DASK_LOGGING__DISTRIBUTED": "warning"},
        )
        await super().start()

    async def close(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()  # the nanny stops its worker, then itself
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        await super().close()


async def start_local_cluster(workers: int, threads_per_worker: int = 1) -> LocalCluster:
    """A LocalCluster of ``workers`` worker processes, every one of them connected."""
    cluster = await LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        worker_class=WorkerProcess,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        # The scheduler serves HTTP (health, metrics) even without a dashboard, by default
        # on port 8787: any free port instead.
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING,
        asynchronous=True,
    )
    return cluster
