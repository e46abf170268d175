"""``dask://host:port`` and ``dask-local[N]``: tasks run on a Dask distributed cluster.

The Dask client runs asynchronously on the engine's own event loop: submitting a task and
awaiting it are awaits, never blocking calls. Every task is one Dask task running the
engine's fused plan (``on_worker``); Dask's own retries are off, the engine's task retry
(``task_max_failures``) retries, and a failing user function reports its operator as on
local[N].

Where data lives decides whether a cluster helps at all:

- Input partitions (receiver blocks, ``parallelize``, queue items) are pickled once, slice
  by slice between event-loop turns, and scattered to the workers in one call per RDD
  (``share``); tasks name them. A partition of an RDD one job reads (a received block, a
  queue item) that pickles to under ``EMBED_BYTES`` rides inside its task's plan instead:
  a scatter costs a round trip, sending a few kilobytes once more does not.
- A shuffle map task's output stays on the worker that computed it: one small Dask task per
  bucket picks the bucket out there, and each reduce task depends on its buckets, which Dask
  moves worker to worker. The driver receives only the map task's summary, so the bytes
  through the driver per batch do not grow with the shuffle.
- Cached blocks (state, window intermediates, ``cache()``) are Dask data under the block's
  id. The task that computes one stores it in its worker process (``block_store``, with a
  disk copy); the driver then publishes it as Dask data on that worker (``publish_block``).
  Tasks that read or store partition i's blocks run on partition i's home worker.

Losing a worker: Dask reruns the tasks it was running elsewhere. A block it held comes back
from its disk copy: the Dask task behind a block is "read this block", with no lineage, so
Dask recomputes it on another worker from the disk copy (blocks are written under
``local_dir``, which must be storage every worker reaches on a cluster of several machines;
the backend warns at start when some worker cannot reach it). Input partitions it held are
scattered again from the driver, which keeps a batch's records while the batch runs; shuffle
outputs it held are recomputed from their map task (Dask does it when the map task's input
survived, the backend otherwise). Losing the scheduler fails the job at once
(``ClusterUnavailableError``): its data is gone with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import cloudpickle
from distributed import Client, Future
from distributed.client import FutureCancelledError

from ...errors import ClusterUnavailableError
from ...rdd.side_output import SideOutput, with_side
from ...rdd.tasks import (
    BlockInput,
    ClusterInput,
    RecordSlices,
    ShuffleInput,
    TaskInput,
    TaskPlan,
    dumps_slice,
)
from ..base import WorkerLostError
from ..block_store import BlockRef, new_spill_dir, remove_disk_copies
from ..owned_dirs import OwnedDir
from ..process_pool import Traffic
from ..protocol import SLICE
from . import on_worker
from .local_cluster import start_local_cluster
from .scheduler_plugin import ReviveLooseTasks

log = logging.getLogger(__name__)

#: A partition pickled to fewer bytes than this travels inside its task's plan.
EMBED_BYTES = 64 * 1024

#: Cores assumed for ``dask://`` before the backend has connected (Spark's minimum default
#: parallelism); once connected, the cluster's worker threads.
CORES_BEFORE_CONNECT = 2

#: Seconds the client may hold messages to the scheduler to send them together.
SEND_INTERVAL = 0.002

#: Seconds between refreshes of the list of workers (placement of new partitions).
WORKERS_REFRESH = 1.0


@dataclass(eq=False)
class ScatteredPartition(ClusterInput):
    """Driver side of an input partition on the cluster: its future, and its records to
    scatter again if the worker holding it is lost (the RDD holds them anyway)."""

    future: Future
    records: list[Any]


@dataclass(eq=False)
class MapOutput:
    """Driver side of one shuffle map task's output on the cluster: its buckets' futures,
    and the task, to run again if the output is lost with its worker."""

    plan: TaskPlan
    index: int
    buckets: list[Future] = field(default_factory=list)
    rebuilding: anyio.Lock = field(default_factory=anyio.Lock)


@dataclass(eq=False)
class BucketRef:
    """Bucket ``index`` of a map output, as a reduce task's ``ShuffleInput`` holds it."""

    output: MapOutput
    index: int

    @property
    def future(self) -> Future:
        return self.output.buckets[self.index]


@dataclass
class _Submission:
    """A plan ready for Dask: pickled with names for the cluster's data, and that data."""

    wire: bytes
    inputs: dict[str, Future]
    blocks: dict[str, Future]


def _gone(future: Future) -> bool:
    """The cluster forgot the future's data (its worker died and it cannot be recomputed)."""
    return future.status in ("cancelled", "lost")


class DaskBackend:
    """Tasks on a Dask cluster: one at ``address``, or a local one of ``local_workers``."""

    def __init__(
        self,
        address: str | None = None,
        *,
        local_workers: int | None = None,
        local_dir: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if (address is None) == (local_workers is None):
            raise ValueError("give either a scheduler address or a number of local workers")
        self._address = address
        self._local_workers = local_workers
        self._local_dir = local_dir
        self._connect_timeout = connect_timeout
        self._cluster: Any = None
        self._client: Client | None = None
        self._spill_dir: OwnedDir | None = None
        self._cores = local_workers or CORES_BEFORE_CONNECT
        self._workers: list[str] = []
        self._workers_at = 0.0
        self._lock = threading.Lock()  # release_blocks runs in finalizers, any thread
        self._blocks: dict[str, Future] = {}
        self._py_files: list[str] = []
        self.traffic = Traffic()

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def cores(self) -> int:
        return self._cores

    @property
    def spill_dir(self) -> str | None:
        return None if self._spill_dir is None else self._spill_dir.path

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the Dask backend is not started")
        return self._client

    @property
    def scheduler_address(self) -> str | None:
        return None if self._client is None else self._client.scheduler.address

    def add_py_file(self, path: str) -> None:
        """Ship ``path`` (.py, .zip, .egg) to every worker at start (Spark's addPyFile)."""
        self._py_files.append(path)

    async def start(self) -> None:
        self._spill_dir = await anyio.to_thread.run_sync(new_spill_dir, self._local_dir)
        try:
            address = self._address
            if self._local_workers is not None:
                self._cluster = await start_local_cluster(self._local_workers)
                address = self._cluster.scheduler_address
            assert address is not None
            self._client = await self._connect(address)
            await self._client.register_plugin(ReviveLooseTasks())
            await self._await_workers(self._local_workers or 1)
            for path in self._py_files:
                await self._client.upload_file(path)
            await self._check_workers()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    async def _connect(self, address: str) -> Client:
        timeout = self._connect_timeout
        try:
            with anyio.fail_after(timeout + 5):  # the client's own timeout, with a margin
                client = await Client(
                    address,
                    asynchronous=True,
                    timeout=timeout,
                    set_as_default=False,
                    direct_to_workers=True,
                    name="aiostream-engine",
                )
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailableError(
                f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                f"({type(exc).__name__}: {exc}); is `dask scheduler` running there?"
            ) from None
        _shorten_batching(client)
        return client

    async def _await_workers(self, count: int) -> None:
        timeout = self._connect_timeout
        try:
            await self.client.wait_for_workers(count, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailableError(
                f"the Dask scheduler at {self.scheduler_address} has no worker after "
                f"{timeout:g} s (needed {count}; {exc}): start one with "
                f"`dask worker {self.scheduler_address}`"
            ) from None
        await self._refresh_workers()

    async def _refresh_workers(self) -> None:
        identity = await self.client.scheduler.identity(n_workers=-1)
        workers = identity.get("workers", {})
        self._workers = sorted(workers)
        self._workers_at = time.monotonic()
        self._cores = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    async def _check_workers(self) -> None:
        """Warn about what would go wrong later: workers that cannot reach the block
        directory (state they hold dies with them), or that hash keys differently."""
        spill = self.spill_dir
        reach = await self.client.run(os.path.isdir, spill)
        blind = sorted(w for w, ok in reach.items() if not ok)
        if blind:
            log.warning(
                "workers %s cannot reach the block directory %s: the cached state they hold "
                "is lost if they die. Set local_dir to storage every worker reaches.",
                ", ".join(blind), spill,
            )
        seeds = set((await self.client.run(hash, "aiostream-engine")).values())
        if len(seeds) > 1:
            log.warning(
                "the Dask workers hash strings differently (start them with the same "
                "PYTHONHASHSEED): keys that are not str, bytes, numbers or tuples of them "
                "would be partitioned inconsistently",
            )

    async def stop(self) -> None:
        client, self._client = self._client, None
        cluster, self._cluster = self._cluster, None
        with self._lock:
            self._blocks.clear()
        with anyio.CancelScope(shield=True):
            if client is not None:
                with anyio.move_on_after(10):
                    await client.close(timeout=5)
            if cluster is not None:
                with anyio.move_on_after(30):
                    await cluster.close(timeout=20)
            if self._spill_dir is not None:
                await anyio.to_thread.run_sync(self._spill_dir.remove)
                self._spill_dir = None

    # ---- blocks ---------------------------------------------------------------------------

    def release_blocks(self, refs: list[BlockRef]) -> None:
        """Forget the blocks' futures (Dask frees their data) and delete their disk copies."""
        remove_disk_copies(refs)
        with self._lock:
            for ref in refs:
                self._blocks.pop(ref.id, None)

    def _publish(self, ref: BlockRef, worker: str) -> None:
        """Block ``ref``, just stored by a task on ``worker``, becomes Dask data there."""
        future = self.client.submit(
            on_worker.publish_block, ref, key=ref.id, workers=[worker],
            allow_other_workers=True, pure=False,
        )
        with self._lock:
            self._blocks[ref.id] = future

    # ---- input partitions -----------------------------------------------------------------

    async def place_raw_block(self, block: Any) -> Any:
        return block  # its workers may be on other hosts: the buffer goes with its task

    async def share(self, partitions: list[list[Any]], reusable: bool) -> list[TaskInput | None]:
        """Every partition pickled once, and scattered (in one call) unless it is small
        and read by one job."""
        shared: list[TaskInput | None] = [None] * len(partitions)
        scatter: dict[str, tuple[bytes, ...]] = {}
        for i, records in enumerate(partitions):
            if not records:
                continue  # an empty RecordsInput costs nothing to send
            chunks = tuple(await _pickled_slices(records))
            if not reusable and sum(map(len, chunks)) < EMBED_BYTES:
                shared[i] = RecordSlices(list(chunks))
            else:
                scatter[f"aiostream-input-{uuid.uuid4().hex}-{i}"] = chunks
        if scatter:
            self.traffic.sent += sum(len(c) for chunks in scatter.values() for c in chunks)
            futures = await self._call(self.client.scatter(scatter, hash=False))
            for key, future in futures.items():
                i = int(key.rsplit("-", 1)[1])
                shared[i] = ScatteredPartition(future, partitions[i])
        return shared

    async def _scatter_again(self, partition: ScatteredPartition) -> None:
        chunks = await _pickled_slices(partition.records)
        self.traffic.sent += sum(map(len, chunks))
        key = f"aiostream-input-{uuid.uuid4().hex}"
        futures = await self._call(self.client.scatter({key: tuple(chunks)}, hash=False))
        partition.future = futures[key]

    # ---- running tasks --------------------------------------------------------------------

    async def run(self, plan: TaskPlan, index: int) -> list[Any]:
        self._check_connected()
        await self._restore_lost(plan)
        submission = self._submission(plan)
        workers = await self._placement(plan)
        if plan.shuffle_write is not None:
            return await self._run_map(plan, index, submission, workers)
        future = self._submit(on_worker.run_task, submission, index, workers)
        payload, written, worker = await self._result(future)
        self.traffic.received += len(payload)
        self._publish_written(plan, written, worker)
        return pickle.loads(payload)

    async def _run_map(
        self, plan: TaskPlan, index: int, submission: _Submission, workers: list[str] | None
    ) -> list[Any]:
        """Run a map task; its buckets stay on the cluster (``BucketRef``s come back)."""
        output = MapOutput(plan, index)
        side = await self._submit_map(output, submission, workers)
        return with_side([BucketRef(output, i) for i in range(len(output.buckets))], side)

    async def _submit_map(
        self, output: MapOutput, submission: _Submission, workers: list[str] | None
    ) -> list[SideOutput]:
        """The map task, and one task per bucket picking it out where the output lives
        (Dask runs a task next to its only dependency). The driver waits for the map task
        to finish and fetches nothing, unless its stages emitted side outputs (its result
        is then a ``TaskOutput``, which Dask reports with its completion): those it fetches
        (a small task next to the output), and returns."""
        write = output.plan.shuffle_write
        assert write is not None
        mapped = self._submit(on_worker.run_map_task, submission, output.index, workers)
        output.buckets = [
            self.client.submit(on_worker.bucket, mapped, i, pure=False)
            for i in range(write.num_partitions)
        ]
        await self._settled(mapped)
        if mapped.type is list:
            return []
        side = self.client.submit(on_worker.side_outputs, mapped, pure=False)
        return list(await self._result(side))

    def _submit(
        self, function: Any, submission: _Submission, index: int, workers: list[str] | None
    ) -> Future:
        self.traffic.sent += len(submission.wire)
        return self.client.submit(
            function, submission.wire, index, submission.inputs, submission.blocks,
            workers=workers, allow_other_workers=workers is not None, pure=False,
        )

    async def _result(self, future: Future) -> Any:
        """The task's result, fetched from its worker."""
        with self._task_errors():
            try:
                return await future
            finally:
                future.release()

    async def _settled(self, future: Future) -> None:
        """Wait for the task to finish; raise its error, fetch nothing."""
        with self._task_errors():
            error = await future.exception()
            if error is not None:
                raise error
            if future.cancelled():
                await future  # raises why

    @contextlib.contextmanager
    def _task_errors(self) -> Iterator[None]:
        """Dask's cancellations as the engine's errors: a lost scheduler fails the job, a
        lost worker's data is a failed attempt (the engine retries)."""
        try:
            yield
        except FutureCancelledError as exc:
            if exc.reason == "scheduler-connection-lost" or not self._connected():
                raise ClusterUnavailableError(
                    f"lost the Dask scheduler at {self.scheduler_address} while a task ran"
                ) from None
            raise WorkerLostError(
                f"the cluster lost the data of a task ({exc.reason}): its worker died"
            ) from None

    def _connected(self) -> bool:
        return self._client is not None and self._client.status == "running"

    def _check_connected(self) -> None:
        if self._client is None:
            raise ClusterUnavailableError("the Dask backend is not started")
        if not self._connected():
            raise ClusterUnavailableError(
                f"lost the Dask scheduler at {self.scheduler_address} (client {self._client.status})"
            )

    async def _call(self, awaitable: Any) -> Any:
        """A client call that fails loudly if the scheduler is lost meanwhile."""
        try:
            return await awaitable
        except (OSError, FutureCancelledError) as exc:
            if not self._connected():
                raise ClusterUnavailableError(
                    f"lost the Dask scheduler at {self.scheduler_address}: {exc}"
                ) from None
            raise

    # ---- plans ----------------------------------------------------------------------------

    def _submission(self, plan: TaskPlan) -> _Submission:
        """The plan with names for the cluster's data it reads, and that data's futures."""
        inputs: dict[str, Future] = {}
        source = plan.input
        if isinstance(source, ScatteredPartition):
            inputs[source.future.key] = source.future
            source = on_worker.Scattered(source.future.key)
        elif isinstance(source, ShuffleInput):
            buckets = []
            for bucket in source.buckets:
                if isinstance(bucket, BucketRef):
                    future = bucket.future
                    inputs[future.key] = future
                    bucket = on_worker.RemoteBucket(future.key)
                buckets.append(bucket)
            source = ShuffleInput(buckets, source.merge, source.operator)
        with self._lock:
            blocks = {r.id: self._blocks[r.id] for r in _block_refs(plan) if r.id in self._blocks}
        wired = TaskPlan(
            source, plan.stages, plan.shuffle_write, plan.description, plan.reads, plan.store_as
        )
        return _Submission(cloudpickle.dumps(wired, pickle.HIGHEST_PROTOCOL), inputs, blocks)

    async def _restore_lost(self, plan: TaskPlan) -> None:
        """Bring back what the plan reads that was lost with a worker (a retry after one
        died): input partitions are scattered again, map outputs computed again."""
        source = plan.input
        if isinstance(source, ScatteredPartition) and _gone(source.future):
            await self._scatter_again(source)
        elif isinstance(source, ShuffleInput):
            outputs = {id(b.output): b.output for b in source.buckets if isinstance(b, BucketRef)}
            for output in outputs.values():
                await self._recompute(output)

    async def _recompute(self, output: MapOutput) -> None:
        async with output.rebuilding:  # several reduce tasks may find it lost at once
            if not any(_gone(f) or f.status == "error" for f in output.buckets):
                return
            log.warning("recomputing a shuffle map output lost with its worker (%s)", output.plan.description)
            await self._restore_lost(output.plan)
            submission = self._submission(output.plan)
            await self._submit_map(output, submission, await self._placement(output.plan))

    async def _placement(self, plan: TaskPlan) -> list[str] | None:
        """Where a task that reads or stores partition i's blocks runs: partition i's home
        worker (the i-th of the sorted workers, modulo their number), as local[N] gives
        partition i a slot. Its blocks were stored there, so they are read in place; after
        the workers changed (one died), Dask moves a block to its new home once. Other
        tasks run wherever Dask puts them (next to their input)."""
        partition = plan.placement
        if partition is None:
            return None
        if time.monotonic() - self._workers_at > WORKERS_REFRESH:
            await self._refresh_workers()
        if not self._workers:
            return None
        return [self._workers[partition % len(self._workers)]]

    def _publish_written(self, plan: TaskPlan, written: list[str], worker: str) -> None:
        if not written:
            return
        refs = {ref.id: ref for ref in _block_refs(plan)}
        for block_id in written:
            ref = refs.get(block_id)
            if ref is None:  # a stage stored a block its plan does not name: cannot place it
                raise RuntimeError(f"a task stored block {block_id}, which its plan does not name")
            self._publish(ref, worker)


def _shorten_batching(client: Client) -> None:
    """Send the client's messages to the scheduler after at most ``SEND_INTERVAL``.

    The client batches them for 10 ms (hard-coded in distributed). A stage's tasks go out
    right after the previous stage's results came in, and the "release" messages for
    those results take that 10 ms slot: every stage of a batch waited up to 10 ms more.
    The interval is an attribute of distributed's BatchedSend, not a documented setting:
    where it is missing nothing changes but the latency.
    """
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None and hasattr(comm, "interval"):
        comm.interval = SEND_INTERVAL


def _block_refs(plan: TaskPlan) -> Iterator[BlockRef]:
    """Every block the plan reads or stores."""
    if isinstance(plan.input, BlockInput):
        yield plan.input.block
    yield from plan.reads
    if plan.store_as is not None:
        yield plan.store_as


async def _pickled_slices(records: list[Any]) -> list[bytes]:
    """The records pickled a slice per event-loop turn (``RecordSlices``' format)."""
    chunks = []
    for start in range(0, len(records), SLICE):
        chunks.append(dumps_slice(records[start : start + SLICE]))
        await anyio.lowlevel.checkpoint()
    return chunks

