"""Blocks: the partitions of cached RDDs, kept where the tasks that computed them ran.

State streams and window intermediates are cached RDDs that every batch reads and replaces.
If their partitions came back to the driver and went out again with every task, the driver
would copy all state every batch. Instead a task that computes a cached partition stores
it in its process's ``STORE`` (a worker's, or the driver's for the in-process backend) and
returns nothing; later tasks name the block (``BlockRef``) and read it where it lives. The
process pool sends a task that reads or writes partition i's blocks to the worker in slot
``i % workers``, so state partition i, the new records of partition i and the previous
window's partition i all meet on one worker.

A worker can die. So that its blocks are not lost with it, a block of a process-pool
backend is also written to its spill directory as one pickle (no fsync: the page cache
outlives a process; a machine crash is what checkpoints are for). A task that needs a
block its process does not hold in memory (a replacement worker, or a task placed on
another worker) loads the file. If the file could not be written (a full disk), the block
lives in memory only, with a warning, and reading it after its worker died raises
``BlockLostError`` naming it.

Blocks are dropped when the RDD holding their ``CachedBlocks`` is garbage collected (or
unpersisted): the same lifetime a driver-side cache had, so a window computed ahead that
still holds a batch keeps that batch's blocks.

A cluster backend (``executor.dask``) holds blocks as the cluster's own data instead: it
hands a task the blocks it reads (``lending``), and learns which blocks the task stored
(the list ``lending`` yields) to take them over from this process's store.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import pickle
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import cloudpickle

from .owned_dirs import OwnedDir, new_owned_dir

log = logging.getLogger(__name__)


class BlockLostError(Exception):
    """A cached partition is gone (its worker died and it had no disk copy)."""


@dataclass(frozen=True)
class BlockRef:
    """Names one block; plain data, so it travels inside task plans.

    ``partition`` places the tasks that read or write it (slot ``partition % workers``);
    ``spill_dir`` is where its disk copy lives (None: memory only, the in-process backend).
    """

    id: str
    partition: int
    spill_dir: str | None = None

    @property
    def path(self) -> str | None:
        return None if self.spill_dir is None else os.path.join(self.spill_dir, self.id)

    def records(self) -> list[Any]:
        """The block's records, from this process's store."""
        return STORE.get(self)

    def put(self, records: list[Any]) -> None:
        """Store ``records`` as this block in this process."""
        STORE.put(self, records)


#: The blocks lent to the task running in this thread, and the ids of those it stored.
_LENT: contextvars.ContextVar[tuple[Mapping[str, list[Any]], list[str]] | None] = (
    contextvars.ContextVar("aiostream_lent_blocks", default=None)
)


@contextlib.contextmanager
def lending(blocks: Mapping[str, list[Any]]) -> Iterator[list[str]]:
    """Within the block, ``STORE.get`` finds ``blocks`` (id -> records) first, and the
    yielded list collects the ids of the blocks ``STORE.put`` stores: for one task, in the
    thread that runs it."""
    written: list[str] = []
    token = _LENT.set((blocks, written))
    try:
        yield written
    finally:
        _LENT.reset(token)


class BlockStore:
    """One process's blocks (memory, plus the disk copies it wrote or loaded)."""

    def __init__(self) -> None:
        self._blocks: dict[str, list[Any]] = {}
        self._lock = threading.Lock()  # the local backend's task thread and the loop share it

    def put(self, ref: BlockRef, records: list[Any]) -> None:
        lent = _LENT.get()
        if lent is not None:
            lent[1].append(ref.id)
        if ref.path is not None:
            self._spill(ref, records)
        with self._lock:
            self._blocks[ref.id] = records

    def _spill(self, ref: BlockRef, records: list[Any]) -> None:
        assert ref.path is not None
        temporary = f"{ref.path}.{os.getpid()}.tmp"
        try:
            try:
                payload = pickle.dumps(records, pickle.HIGHEST_PROTOCOL)
            except Exception:  # an instance of a class cloudpickle brought from the driver
                payload = cloudpickle.dumps(records, pickle.HIGHEST_PROTOCOL)
            with open(temporary, "wb") as file:
                file.write(payload)
            os.replace(temporary, ref.path)  # a reader never sees half a block
        except OSError as exc:
            log.warning(
                "block %s (partition %d) kept in memory only: its disk copy could not be "
                "written (%s); it is lost if this worker dies", ref.id, ref.partition, exc,
            )
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    def get(self, ref: BlockRef) -> list[Any]:
        lent = _LENT.get()
        if lent is not None and ref.id in lent[0]:
            return lent[0][ref.id]
        with self._lock:
            records = self._blocks.get(ref.id)
        if records is not None:
            return records
        reason = "it has no disk copy"
        if ref.path is not None:
            try:
                with open(ref.path, "rb") as file:
                    records = pickle.load(file)
            except OSError as exc:
                reason = f"its disk copy is unreadable or was never written ({exc})"
            else:
                with self._lock:
                    self._blocks[ref.id] = records
                return records
        raise BlockLostError(
            f"cached partition {ref.partition} (block {ref.id}) is lost: the process that "
            f"computed it is gone and {reason}"
        )

    def take(self, ref: BlockRef) -> list[Any]:
        """The block's records (as ``get``), no longer held by this store."""
        records = self.get(ref)
        self.drop([ref.id])
        return records

    def drop(self, ids: list[str]) -> None:
        with self._lock:
            for block_id in ids:
                self._blocks.pop(block_id, None)


#: This process's blocks.
STORE = BlockStore()


class CachedBlocks:
    """The blocks of one cached RDD, one per partition; dropped (through ``release``, in
    the backend) when this object is garbage collected."""

    def __init__(self, refs: list[BlockRef], release: Callable[[list[BlockRef]], None]) -> None:
        self.refs = refs
        #: Records in each block, once stored (None: not stored yet).
        self.sizes: list[int] | None = None
        weakref.finalize(self, release, refs)


def new_block_refs(count: int, spill_dir: str | None, prefix: str) -> list[BlockRef]:
    """``count`` fresh refs, one per partition; ids are unique across processes and runs."""
    base = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return [BlockRef(f"{base}-{i}", i, spill_dir) for i in range(count)]


def remove_disk_copies(refs: list[BlockRef]) -> None:
    """Delete the refs' disk copies; called from finalizers, so it never raises."""
    for ref in refs:
        if ref.path is not None:
            with contextlib.suppress(OSError):  # never written, or already gone
                os.unlink(ref.path)


def new_spill_dir(parent: str | None) -> OwnedDir:
    """A fresh spill directory for this process (a killed driver's are removed first)."""
    return new_owned_dir(parent or tempfile.gettempdir(), "aiostream-blocks-")
