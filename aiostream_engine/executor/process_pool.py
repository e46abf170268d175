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
import collections
import logging
import pickle
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import cloudpickle

from ..errors import DataNotSerializableError
from ..rdd.tasks import SharedSlices, TaskPlan
from .base import WorkerLostError
from .block_store import BlockRef, new_spill_dir, remove_disk_copies
from .owned_dirs import OwnedDir, new_owned_dir
from .protocol import ERROR, GC_THRESHOLD_ENV, HEADER, NICE_ENV, PART_COUNT, pieces, request_parts
from .py_files import importable_here
from .shared_input import RawBlockFiles, share_records, worth_sharing, worth_sharing_raw
from .worker_env import worker_environment

log = logging.getLogger(__name__)

_STREAM_LIMIT = 1 << 20


@dataclass
class Traffic:
    """Bytes written to and read from the workers' pipes (what crossed the driver)."""

    sent: int = 0
    received: int = 0


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, traffic: Traffic) -> None:
        self.process = process
        self.traffic = traffic

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, plan: TaskPlan, index: int, drops: list[str]) -> tuple[bytes, bytes]:
        """Send one task and read its response.

        The request's parts are encoded one at a time, each written before the next is
        encoded; ``drain`` waits while the worker is behind, so the driver holds about
        one slice of a partition's bytes at a time.
        """
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        count, parts = request_parts(plan, index, drops)
        unpicklable: Exception | None = None
        try:
            stdin.write(PART_COUNT.pack(count))
            for _ in range(count):
                # After a part that could not be encoded, empty ones keep the frame whole.
                part: bytes | memoryview = b""
                if unpicklable is None:
                    try:
                        part = next(parts)
                    except Exception as exc:  # a record (or the plan) that cannot be pickled
                        unpicklable = exc
                stdin.write(HEADER.pack(len(part)))
                for piece in pieces(part):
                    stdin.write(piece)
                    self.traffic.sent += len(piece)
                    del piece  # the transport keeps what it has not written yet
                    await stdin.drain()
                    await anyio.lowlevel.checkpoint()  # drain returns at once under its limit
                del part
            size = HEADER.unpack(await stdout.readexactly(HEADER.size))[0]
            body = await stdout.readexactly(size)
            self.traffic.received += size
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            raise WorkerLostError(
                f"worker process {self.pid} died (exit code {self.process.returncode})"
            ) from exc
        if unpicklable is not None:  # the worker failed on the empty part and is in step
            if isinstance(unpicklable, DataNotSerializableError):
                raise unpicklable
            raise DataNotSerializableError(f"task {index}", unpicklable) from unpicklable
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
    """Workers in numbered slots. A task that reads or writes a cached partition's blocks
    runs in slot ``partition % workers`` (where those blocks live in memory); any other
    task takes the first free slot. A replacement worker takes its predecessor's slot and
    reads that slot's blocks from their disk copies (``block_store``)."""

    def __init__(
        self, workers: int, nice: int = 0, local_dir: str | None = None, shared_memory_dir: str = "",
        gc_threshold: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError("a process pool needs at least one worker")
        self._size = workers
        self._nice = nice
        self._gc_threshold = gc_threshold
        self._local_dir = local_dir
        self._slots: list[_Worker] = []
        self._free: set[int] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._spill_dir: OwnedDir | None = None
        self._shared_memory_parent = shared_memory_dir
        self._shared_dir: OwnedDir | None = None  # None: parallelized partitions are piped
        self._shared_dir_full = False
        self._raw_files: RawBlockFiles | None = None
        self._raw_share_warned = False
        # release_blocks runs in finalizers, in any thread, possibly inside _take_drops: it
        # only appends (slot, block id) here, which takes no lock; the event loop files them.
        self._released: collections.deque[tuple[int, str]] = collections.deque()
        self._pending_drops: list[list[str]] = [[] for _ in range(workers)]  # the loop's only
        self.replacements = 0
        self.traffic = Traffic()

    @property
    def cores(self) -> int:
        return self._size

    @property
    def spill_dir(self) -> str | None:
        return None if self._spill_dir is None else self._spill_dir.path

    @property
    def shared_dir(self) -> str | None:
        """Where parallelized partitions are shared (None: they are piped to each task)."""
        return None if self._shared_dir is None else self._shared_dir.path

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiostream_engine.executor.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
            env={**worker_environment(), "PYTHONUNBUFFERED": "1", NICE_ENV: str(self._nice),
                 GC_THRESHOLD_ENV: str(self._gc_threshold)},
        )
        return _Worker(process, self.traffic)

    async def start(self) -> None:
        # Scanning for (and removing) stale directories is file-system work: off the loop.
        self._spill_dir = await anyio.to_thread.run_sync(new_spill_dir, self._local_dir)
        self._shared_dir = await anyio.to_thread.run_sync(_new_shared_dir, self._shared_memory_parent)
        if self._shared_dir is not None:
            self._raw_files = RawBlockFiles(self._shared_dir.path)
        self._slots = list(await asyncio.gather(*(self._spawn() for _ in range(self._size))))
        self._free = set(range(self._size))

    def worker_pids(self) -> list[int]:
        """The pids of the live workers, by slot (tests kill one of them)."""
        return [w.pid for w in self._slots]

    # ---- blocks -------------------------------------------------------------------------

    def add_py_file(self, path: str) -> None:
        importable_here(path)  # the workers import from this process's path

    def release_blocks(self, refs: list[BlockRef]) -> None:
        """Delete the disk copies now; the worker holding a block (only its home slot's:
        every task that touches it is placed there) drops it from memory when it gets its
        next task (the ids ride along with it)."""
        remove_disk_copies(refs)
        self._released.extend([(ref.partition % self._size, ref.id) for ref in refs])

    def _take_drops(self, slot: int) -> list[str]:
        while self._released:
            home, block_id = self._released.popleft()
            self._pending_drops[home].append(block_id)
        drops, self._pending_drops[slot] = self._pending_drops[slot], []
        return drops

    # ---- parallelized partitions --------------------------------------------------------

    async def share(self, partitions: list[list[Any]], reusable: bool) -> list[SharedSlices | None]:
        """Reusable partitions pickled once into shared memory, for every task that reads
        them (``shared_input``); None: a partition travels with each task (the only job
        that reads it, or too small, or no room)."""
        if not reusable:
            return [None] * len(partitions)
        return [await self._share_one(records) for records in partitions]

    async def _share_one(self, records: list[Any]) -> SharedSlices | None:
        if self._shared_dir is None or self._shared_dir_full or not worth_sharing(records):
            return None
        try:
            try:
                return await share_records(records, self._shared_dir.path)
            except OSError:
                if self._raw_files is None:
                    raise
                # Files kept for raw blocks give way, once, before sharing stops for good.
                await anyio.to_thread.run_sync(self._raw_files.drop_kept)
                return await share_records(records, self._shared_dir.path)
        except OSError as exc:  # full: pipe from now on rather than pickle twice every time
            log.warning(
                "parallelized partitions go through the pipes to every task from now on: "
                "a partition of %d records could not be written to shared memory in %s (%s)",
                len(records), self._shared_dir.path, exc,
            )
            self._shared_dir_full = True  # the partitions shared so far stay readable
            return None

    async def place_raw_block(self, block: Any) -> Any:
        """The raw block with its buffer in shared memory, where its worker maps it
        (``shared_input``), unless it is small or sharing is off. Where there is no room
        it stays in memory and crosses the pipe (with a warning, once): each block is
        tried afresh, since raw blocks are freed batch after batch."""
        files = self._raw_files
        if files is None or not worth_sharing_raw(block):
            return block
        try:
            return await anyio.to_thread.run_sync(files.share, block)
        except Exception as exc:  # no room, or no thread: the block is stored all the same
            if not self._raw_share_warned:
                self._raw_share_warned = True
                log.warning(
                    "a raw block of %d bytes crosses the pipe to its worker: it could not be "
                    "written to shared memory in %s (%s); so will any other that does not fit",
                    len(block.data), files.directory, exc,
                )
            return block

    # ---- slots --------------------------------------------------------------------------

    async def _acquire(self, placement: int | None) -> int:
        while True:
            if placement is not None:
                slot: int | None = placement % self._size
                if slot not in self._free:
                    slot = None
            else:
                slot = min(self._free, default=None)
            if slot is not None:
                self._free.discard(slot)
                return slot
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _release(self, slot: int) -> None:
        self._free.add(slot)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each looks again: the slot may suit only some of them
            if not waiter.done():
                waiter.set_result(None)

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        if not self._slots:
            raise RuntimeError("the process pool is not started")
        slot = await self._acquire(plan.placement)
        worker = self._slots[slot]
        healthy = False
        try:
            status, body = await worker.call(plan, index, self._take_drops(slot))
            healthy = True
        except DataNotSerializableError:
            healthy = True  # the request went out whole: the worker is in step
            raise
        finally:
            if not healthy:  # died, or cancelled mid-task: its pipe state is unknown, replace it
                with anyio.CancelScope(shield=True):
                    await self._replace(slot, worker)
            self._release(slot)
        if status == ERROR:
            raise cloudpickle.loads(body)
        return pickle.loads(body)

    async def _replace(self, slot: int, worker: _Worker) -> None:
        worker.kill()
        await worker.process.wait()
        if self._slots:  # not stopping
            self._slots[slot] = await self._spawn()
            self.replacements += 1

    async def stop(self) -> None:
        workers, self._slots = self._slots, []
        self._free = set()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*(w.close() for w in workers))
        for directory in (self._spill_dir, self._shared_dir):
            if directory is not None:
                with anyio.CancelScope(shield=True):  # a large directory: off the loop
                    await anyio.to_thread.run_sync(directory.remove)
        self._spill_dir = self._shared_dir = None
        self._raw_files = None


def _new_shared_dir(parent: str) -> OwnedDir | None:
    """This run's directory for shared partitions; None (with a warning, unless sharing is
    switched off with '') where ``parent`` is not a directory this process can write."""
    if not parent:
        return None
    try:
        return new_owned_dir(parent, "aiostream-shared-")
    except OSError as exc:
        log.warning(
            "shared_memory_dir %r cannot be used (%s): parallelized partitions go through "
            "the pipes to every task", parent, exc,
        )
        return None
