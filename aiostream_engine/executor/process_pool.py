"""``local[N]`` / ``local[*]``: tasks run on a pool of worker processes.

Each worker is a subprocess (``executor/worker.py``) spoken to over its stdin/stdout pipes
with asyncio streams, so the event loop only awaits I/O. Why not
``concurrent.futures.ProcessPoolExecutor``: it re-imports the user's ``__main__`` in every
spawned worker (PySpark-style scripts without a main guard would run twice), and one dead
worker breaks the whole pool, failing every task in flight. Here a dead worker fails only
its own task (``WorkerLostError``, retried by the runner) and is replaced.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from typing import Any

import anyio
import anyio.lowlevel
import cloudpickle

from ..rdd.tasks import TaskPlan
from .base import WorkerLostError
from .protocol import ERROR, HEADER, NICE_ENV, PART_COUNT, request_parts

_STREAM_LIMIT = 1 << 20


def _driver_path() -> str:
    """The driver's import path, so a worker can import what cloudpickle pickled by
    reference (functions of modules the driver found through sys.path, e.g. test modules
    that pytest put on it, or a script's sibling modules when run from elsewhere)."""
    return os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)


def _worker_hash_seed() -> str:
    """One str/bytes hash seed for every worker, as PySpark does for its executors.

    ``stable_hash`` covers str, bytes, numbers and tuples; other keys (dates, enums,
    frozen dataclasses) fall back to ``hash``, which is salted per process: with a seed
    per worker, equal keys from two map tasks would land in different reduce partitions.
    """
    seed = os.environ.get("PYTHONHASHSEED", "")
    return seed if seed.isdigit() else "0"


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, plan: TaskPlan, index: int) -> tuple[bytes, bytes]:
        """Send one task and read its response.

        The request's parts are encoded one at a time, each written before the next is
        encoded; ``drain`` waits while the worker is behind, so the driver holds about
        one slice of a partition's bytes at a time.
        """
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        count, parts = request_parts(plan, index)
        try:
            stdin.write(PART_COUNT.pack(count))
            for part in parts:
                stdin.write(HEADER.pack(len(part)))
                stdin.write(part)
                del part  # the transport keeps what it has not written yet
                await stdin.drain()
                await anyio.lowlevel.checkpoint()  # drain returns at once under its limit
            size = HEADER.unpack(await stdout.readexactly(HEADER.size))[0]
            body = await stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            raise WorkerLostError(
                f"worker process {self.pid} died (exit code {self.process.returncode})"
            ) from exc
        return body[:1], body[1:]

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            with anyio.fail_after(5):
                await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()


class ProcessPoolBackend:
    def __init__(self, workers: int, nice: int = 0) -> None:
        if workers < 1:
            raise ValueError("a process pool needs at least one worker")
        self._size = workers
        self._nice = nice
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self.replacements = 0

    @property
    def cores(self) -> int:
        return self._size

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiostream_engine.executor.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": _driver_path(),
                "PYTHONHASHSEED": _worker_hash_seed(),
                NICE_ENV: str(self._nice),
            },
        )
        worker = _Worker(process)
        self._all.add(worker)
        return worker

    async def start(self) -> None:
        self._idle = asyncio.Queue()
        for worker in await asyncio.gather(*(self._spawn() for _ in range(self._size))):
            self._idle.put_nowait(worker)

    def worker_pids(self) -> list[int]:
        """The pids of the live workers (tests kill one of them)."""
        return [w.pid for w in self._all]

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        if self._idle is None:
            raise RuntimeError("the process pool is not started")
        worker = await self._idle.get()
        healthy = False
        try:
            status, body = await worker.call(plan, index)
            healthy = True
        finally:
            if healthy:
                self._idle.put_nowait(worker)
            else:  # died, or cancelled mid-task: its pipe state is unknown, replace it
                await self._replace(worker)
        if status == ERROR:
            raise cloudpickle.loads(body)
        return pickle.loads(body)

    async def _replace(self, worker: _Worker) -> None:
        self._all.discard(worker)
        worker.kill()
        with anyio.CancelScope(shield=True):
            await worker.process.wait()
            replacement = await self._spawn()
        self.replacements += 1
        assert self._idle is not None
        self._idle.put_nowait(replacement)

    async def stop(self) -> None:
        workers, self._all = list(self._all), set()
        self._idle = None
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*(w.close() for w in workers))
