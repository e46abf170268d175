"""The receiver write-ahead log: every block durable before it is acknowledged or used.

One log per block stream, in ``<checkpoint dir>/receivedData/<stream id>/``, made of
segment files ``segment-<n>.wal``. A segment starts with a magic and holds one record per
block::

    length (4 bytes, big endian) | CRC-32 of the payload (4 bytes) | payload

where the payload is ``pickle((stream id, block id, records))``. A block is addressed by
``(segment name, offset)`` (a ``WalRef``): that is what the checkpoint metadata stores for
each batch, so a recovered batch reads exactly the blocks it had.

A crash in the middle of an append leaves a torn last record: too short for its length, or
failing its checksum. Reading the log stops at the first such record, drops it (the file is
truncated there) and keeps every record before it.

Segments roll after ``roll_interval`` seconds of the engine's clock or ``max_segment_bytes``;
a closed segment is deleted once every block in it has been released (its batches completed
and are covered by a state checkpoint, see ``ReceiverTracker.forget_batch``).

Blocking file work (open, write, fsync, truncate, unlink) always runs in a worker thread
(``anyio.to_thread``), never on the event loop; one append at a time per log.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

import anyio
import anyio.to_thread

from ..checkpoint import fsync_directory
from ..clock import Clock

log = logging.getLogger("aiostream_engine.receiver.wal")

MAGIC = b"ASEWAL01"
_RECORD = struct.Struct(">II")  # payload length, crc32 of the payload
_NAME = re.compile(r"^segment-(\d+)\.wal$")

#: Where a block lives in the log: (segment file name, byte offset of its record).
WalRef = tuple[str, int]


@dataclass(frozen=True)
class WalEntry:
    """One block read back from the log."""

    ref: WalRef
    stream_id: int
    block_id: int
    records: list[Any]


@dataclass
class _Segment:
    name: str
    file: IO[bytes]
    size: int
    opened_at: float


def segment_name(sequence: int) -> str:
    return f"segment-{sequence:010d}.wal"


def encode_record(stream_id: int, block_id: int, records: list[Any]) -> bytes:
    payload = pickle.dumps((stream_id, block_id, records), protocol=pickle.HIGHEST_PROTOCOL)
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: str) -> tuple[list[tuple[int, Any]], int]:
    """The records of one segment as ``(offset, (stream id, block id, records))``, and the
    offset where the valid part ends (the file size unless a record is torn or corrupt)."""
    entries: list[tuple[int, Any]] = []
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            return entries, 0
        offset = len(MAGIC)
        while True:
            header = f.read(_RECORD.size)
            if not header:
                return entries, offset
            if len(header) < _RECORD.size:
                return entries, offset
            length, crc = _RECORD.unpack(header)
            payload = f.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return entries, offset
            entries.append((offset, pickle.loads(payload)))
            offset += _RECORD.size + length


class WriteAheadLog:
    """The segmented log of one block stream. Not thread-safe: one owner on the event loop."""

    def __init__(
        self,
        directory: str,
        clock: Clock,
        *,
        fsync: str = "block",
        fsync_interval: float = 1.0,
        roll_interval: float = 60.0,
        max_segment_bytes: int = 64 << 20,
    ) -> None:
        if fsync not in ("block", "interval"):
            raise ValueError(f'fsync must be "block" or "interval", got {fsync!r}')
        self.directory = directory
        self._clock = clock
        self._fsync_each_block = fsync == "block"
        self._fsync_interval = fsync_interval
        self._roll_interval = roll_interval
        self._max_bytes = max_segment_bytes
        self._lock = anyio.Lock()
        self._active: _Segment | None = None
        self._next_sequence = 0
        self._outstanding: Counter[str] = Counter()
        self._closed: set[str] = set()
        self._unsynced = False
        self._last_sync = clock.now()
        #: Replaceable for tests; called with a file descriptor in a worker thread.
        self.fsync: Callable[[int], None] = os.fsync
        self.appends = 0
        self.fsyncs = 0
        self.deleted_segments = 0

    # ---- writing ------------------------------------------------------------------------

    async def append(self, stream_id: int, block_id: int, records: list[Any]) -> WalRef:
        """Append one block; returns once it is written (and fsynced, by the policy)."""
        async with self._lock:
            now = self._clock.now()
            sync = self._fsync_each_block or now - self._last_sync >= self._fsync_interval
            ref, rolled = await anyio.to_thread.run_sync(
                self._append_blocking, stream_id, block_id, records, now, sync
            )
            if sync:
                self._last_sync = now
            self._outstanding[ref[0]] += 1
            self.appends += 1
            if rolled is not None:
                await self._retire(rolled)
            return ref

    def _append_blocking(
        self, stream_id: int, block_id: int, records: list[Any], now: float, sync: bool
    ) -> tuple[WalRef, str | None]:
        record = encode_record(stream_id, block_id, records)
        rolled = None
        active = self._active
        if active is not None and (
            now - active.opened_at >= self._roll_interval
            or (active.size > len(MAGIC) and active.size + len(record) > self._max_bytes)
        ):
            rolled = self._close_active_blocking()
        active = self._active or self._open_blocking(now)
        offset = active.size
        active.file.write(record)
        active.file.flush()
        active.size += len(record)
        if sync:
            self._fsync_blocking(active)
        else:
            self._unsynced = True
        return (active.name, offset), rolled

    def _open_blocking(self, now: float) -> _Segment:
        os.makedirs(self.directory, exist_ok=True)
        name = segment_name(self._next_sequence)
        self._next_sequence += 1
        file = open(os.path.join(self.directory, name), "xb")  # noqa: SIM115 (kept open)
        file.write(MAGIC)
        file.flush()
        self.fsync(file.fileno())
        fsync_directory(self.directory)  # the new file's name is durable too
        self._active = _Segment(name, file, len(MAGIC), now)
        return self._active

    def _fsync_blocking(self, segment: _Segment) -> None:
        self.fsync(segment.file.fileno())
        self._unsynced = False
        self.fsyncs += 1

    def _close_active_blocking(self) -> str | None:
        active, self._active = self._active, None
        if active is None:
            return None
        if self._unsynced:
            self._fsync_blocking(active)
        active.file.close()
        return active.name

    async def tick(self) -> None:
        """Periodic work (the block generator calls it every block interval): the
        interval fsync, and rolling an idle segment whose time is up, so it can be deleted."""
        async with self._lock:
            active = self._active
            if active is None:
                return
            now = self._clock.now()
            if now - active.opened_at >= self._roll_interval:
                rolled = await anyio.to_thread.run_sync(self._close_active_blocking)
                if rolled is not None:
                    await self._retire(rolled)
            elif self._unsynced and now - self._last_sync >= self._fsync_interval:
                await anyio.to_thread.run_sync(self._fsync_blocking, active)
                self._last_sync = now

    async def close(self) -> None:
        async with self._lock:
            rolled = await anyio.to_thread.run_sync(self._close_active_blocking)
            if rolled is not None:
                self._closed.add(rolled)

    # ---- releasing ----------------------------------------------------------------------

    async def release(self, refs: Iterable[WalRef]) -> None:
        """These blocks are no longer needed; delete closed segments left with none."""
        emptied = set()
        for segment, _ in refs:
            self._outstanding[segment] -= 1
            if self._outstanding[segment] <= 0:
                emptied.add(segment)
        for segment in sorted(emptied):
            await self._retire(segment, closing=False)

    async def _retire(self, segment: str, *, closing: bool = True) -> None:
        """Mark ``segment`` closed (when ``closing``); delete it if closed and unneeded."""
        if closing:
            self._closed.add(segment)
        if segment in self._closed and self._outstanding[segment] <= 0:
            self._closed.discard(segment)
            del self._outstanding[segment]
            await anyio.to_thread.run_sync(self._unlink_blocking, segment)
            self.deleted_segments += 1

    def _unlink_blocking(self, segment: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, segment))
        except FileNotFoundError:
            pass

    def segments(self) -> list[str]:
        """Segment files on disk, oldest first (blocking; for tests and tools)."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(n for n in os.listdir(self.directory) if _NAME.match(n))

    # ---- recovery -----------------------------------------------------------------------

    async def recover(self) -> list[WalEntry]:
        """Every block in the log, oldest first; torn tails are dropped (truncated)."""
        async with self._lock:
            return await anyio.to_thread.run_sync(self._recover_blocking)

    def _recover_blocking(self) -> list[WalEntry]:
        entries: list[WalEntry] = []
        for name in self.segments():
            path = os.path.join(self.directory, name)
            self._next_sequence = max(self._next_sequence, int(_NAME.match(name)[1]) + 1)  # type: ignore[index]
            found, valid_end = read_segment(path)
            size = os.path.getsize(path)
            if valid_end < size:
                log.warning(
                    "write-ahead log %s: dropping %d bytes of a torn or corrupt record at "
                    "offset %d (%d good blocks kept)", path, size - valid_end, valid_end,
                    len(found),
                )
                with open(path, "r+b") as f:
                    f.truncate(valid_end)
                    f.flush()
                    self.fsync(f.fileno())
            for offset, (stream_id, block_id, records) in found:
                entries.append(WalEntry((name, offset), stream_id, block_id, records))
            self._closed.add(name)
        return entries

    async def keep_only(self, refs: Iterable[WalRef]) -> None:
        """After recovery: the recovered blocks still needed are ``refs``; segments holding
        none of them are deleted now, the others once those blocks are released."""
        for segment, _ in refs:
            self._outstanding[segment] += 1
        for segment in sorted(self._closed):
            await self._retire(segment, closing=False)
