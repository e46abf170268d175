"""The receiver write-ahead log: every block durable before it is acknowledged or used.

One log per block stream, in ``<checkpoint dir>/receivedData/<stream id>/`` (directories
0700, files 0600), made of segment files ``segment-<n>.wal``. A segment starts with a magic
and holds one record per block, framed by ``storage.framing``: a sync marker, a header with
its own checksum (payload kind, stream id, block id, length), the payload, and an HMAC
under the engine's key (``storage.keys``). The payload is opaque here: bytes and a kind,
encoded and decoded by ``receiver.block_payload``. A block is addressed by
``(segment name, offset)`` (a ``WalRef``): that is what the checkpoint metadata stores for
each batch, so a recovered batch reads exactly the blocks it had.

Reading never changes the files. A record that does not verify is skipped and reported
(``WalDamage``: where, and which block when its header held); reading resumes at the next
record that verifies, so damage costs only the blocks it touched. The unfinished last
record of a crashed append (``torn``) never completed, so no batch and no acknowledgement
depended on it. What a damaged record means for the batches is decided by the recovery
(``receiver.wal_recovery``), which knows which blocks they need.

Segments roll after ``roll_interval`` seconds of the engine's clock or ``max_segment_bytes``;
a closed segment is deleted once every block in it has been released (its batches completed
and are covered by the oldest state checkpoint kept, see ``ReceiverTracker.forget_batch``).

Blocking file work (open, write, fsync, unlink) always runs in a worker thread
(``anyio.to_thread``), never on the event loop; one append at a time per log.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO

import anyio
import anyio.to_thread

from ..checkpoint import fsync_directory
from ..clock import Clock
from ..errors import CheckpointFormatError
from ..storage.framing import Damage, Record, frame, record_size, scan
from ..storage.keys import CheckpointKey
from ..storage.private_dir import ensure_private_dir, open_private

log = logging.getLogger("aiostream_engine.receiver.wal")

MAGIC = b"ASEWAL02"
#: The first, unauthenticated format: refused, never read.
OLD_MAGICS = (b"ASEWAL01",)
#: What the MAC of a log record is for (see ``CheckpointKey.mac``).
LABEL = b"aiostream-engine receiver wal\0"
_NAME = re.compile(r"^segment-(\d+)\.wal$")

#: Where a block lives in the log: (segment file name, byte offset of its record).
WalRef = tuple[str, int]


@dataclass(frozen=True)
class WalEntry:
    """One block read back from the log: its payload as written (see ``block_payload``)."""

    ref: WalRef
    stream_id: int
    block_id: int
    kind: int
    payload: bytes


@dataclass(frozen=True)
class WalDamage:
    """Bytes ``start`` to ``end`` of ``segment`` hold no record that verifies.

    ``block_id`` is the damaged record's block when its header held; ``previous_block_id``
    and ``next_block_id`` are the nearest good blocks around it in the log (block ids only
    grow along a log, so the blocks it held are strictly between them).
    ``torn``: the unfinished last append of a crash, which nothing had used.
    """

    segment: str
    start: int
    end: int
    block_id: int | None
    previous_block_id: int | None
    next_block_id: int | None
    torn: bool
    #: The stretch is exactly the named block's record (its header held, its MAC did not).
    one_record: bool = False

    @property
    def first_block_id(self) -> int | None:
        """The lowest block id the stretch may have held (None: unknown)."""
        if self.block_id is not None:
            return self.block_id
        return None if self.previous_block_id is None else self.previous_block_id + 1

    @property
    def last_block_id(self) -> int | None:
        """The highest block id the stretch may have held (None: unknown)."""
        if self.one_record:
            return self.block_id
        return None if self.next_block_id is None else self.next_block_id - 1

    def describe(self) -> str:
        where = f"{self.segment} bytes {self.start}-{self.end}"
        low, high = self.first_block_id, self.last_block_id
        if low is not None and low == high:
            return f"block {low} ({where})"
        return f"blocks {'?' if low is None else low}..{'?' if high is None else high} ({where})"


@dataclass(frozen=True)
class WalContents:
    """Everything a log holds: the blocks that verified, oldest first, and the damage."""

    entries: list[WalEntry]
    damage: list[WalDamage]


@dataclass
class _Segment:
    name: str
    file: IO[bytes]
    size: int
    opened_at: float


def segment_name(sequence: int) -> str:
    return f"segment-{sequence:010d}.wal"


def read_segment(path: str, key: CheckpointKey) -> tuple[list[Record], list[Damage]]:
    """The records of one segment that verify, and its damaged stretches. Blocking."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [], []
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            magic = data[: len(MAGIC)]
            if magic in OLD_MAGICS:
                raise CheckpointFormatError(
                    f"{path} is a write-ahead log segment of an older, unauthenticated "
                    "format; this version does not read it (start with a new checkpoint "
                    "directory)"
                )
            if magic != MAGIC:  # a damaged magic: the records after it may still be good
                log.warning("write-ahead log %s: the segment's magic is damaged", path)
            records: list[Record] = []
            damage: list[Damage] = []
            for item in scan(data, key, LABEL, min(len(MAGIC), size)):
                (records if isinstance(item, Record) else damage).append(item)
            return records, damage


class WriteAheadLog:
    """The segmented log of one block stream. Not thread-safe: one owner on the event loop.

    ``directory`` is created 0700 (and its parent, ``receivedData``); an existing one must
    be this user's and private unless ``require_private`` is off (``checkpoint_dir_check``).
    """

    def __init__(
        self,
        directory: str,
        clock: Clock,
        key: CheckpointKey,
        *,
        fsync: str = "block",
        fsync_interval: float = 1.0,
        roll_interval: float = 60.0,
        max_segment_bytes: int = 64 << 20,
        require_private: bool = True,
    ) -> None:
        if fsync not in ("block", "interval"):
            raise ValueError(f'fsync must be "block" or "interval", got {fsync!r}')
        self.directory = directory
        self._clock = clock
        self._key = key
        self._fsync_each_block = fsync == "block"
        self._fsync_interval = fsync_interval
        self._roll_interval = roll_interval
        self._max_bytes = max_segment_bytes
        self._require_private = require_private
        self._lock = anyio.Lock()
        self._active: _Segment | None = None
        self._next_sequence = 0
        self._outstanding: Counter[str] = Counter()
        self._closed: set[str] = set()
        self._unsynced = False
        self._last_sync = clock.now()
        self._directory_ready = False
        #: Replaceable for tests; called with a file descriptor in a worker thread.
        self.fsync: Callable[[int], None] = os.fsync
        self.appends = 0
        #: Bytes appended since this log was opened (records, framing included).
        self.bytes_written = 0
        self.fsyncs = 0
        self.deleted_segments = 0

    def _prepare_directory(self) -> None:
        if not self._directory_ready:
            ensure_private_dir(os.path.dirname(self.directory), require_private=self._require_private)
            ensure_private_dir(self.directory, require_private=self._require_private)
            self._directory_ready = True

    # ---- writing ------------------------------------------------------------------------

    async def append(
        self, stream_id: int, block_id: int, payload: Sequence[bytes | memoryview], kind: int
    ) -> WalRef:
        """Append one block's encoded records (``block_payload``: the payload's parts,
        written one after the other); returns once it is written (and fsynced, by the
        policy)."""
        async with self._lock:
            now = self._clock.now()
            sync = self._fsync_each_block or now - self._last_sync >= self._fsync_interval
            ref, rolled = await anyio.to_thread.run_sync(
                self._append_blocking, stream_id, block_id, payload, kind, now, sync
            )
            if sync:
                self._last_sync = now
            self._outstanding[ref[0]] += 1
            self.appends += 1
            if rolled is not None:
                await self._retire(rolled)
            return ref

    def _append_blocking(
        self, stream_id: int, block_id: int, payload: Sequence[bytes | memoryview], kind: int,
        now: float, sync: bool,
    ) -> tuple[WalRef, str | None]:
        parts = frame(self._key, LABEL, kind, stream_id, block_id, *payload)
        length = record_size(sum(len(part) for part in payload))
        rolled = None
        active = self._active
        if active is not None and (
            now - active.opened_at >= self._roll_interval
            or (active.size > len(MAGIC) and active.size + length > self._max_bytes)
        ):
            rolled = self._close_active_blocking()
        active = self._active or self._open_blocking(now)
        offset = active.size
        for part in parts:
            active.file.write(part)
        active.file.flush()
        active.size += length
        self.bytes_written += length
        if sync:
            self._fsync_blocking(active)
        else:
            self._unsynced = True
        return (active.name, offset), rolled

    def _open_blocking(self, now: float) -> _Segment:
        self._prepare_directory()
        name = segment_name(self._next_sequence)
        self._next_sequence += 1
        fd = open_private(os.path.join(self.directory, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        file = os.fdopen(fd, "wb")
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

    async def recover(self) -> WalContents:
        """Every block in the log that verifies, oldest first, and where it is damaged.
        The files are left as they are; new blocks go to a new segment."""
        async with self._lock:
            return await anyio.to_thread.run_sync(self._recover_blocking)

    def _recover_blocking(self) -> WalContents:
        if os.path.lexists(self.directory):
            self._prepare_directory()
        entries: list[WalEntry] = []
        found: list[tuple[str, Damage, int]] = []  # (segment, stretch, entries before it)
        for name in self.segments():
            path = os.path.join(self.directory, name)
            self._next_sequence = max(self._next_sequence, int(_NAME.match(name)[1]) + 1)  # type: ignore[index]
            records, damaged = read_segment(path, self._key)
            stretches = iter(damaged)
            stretch = next(stretches, None)
            for record in records:
                while stretch is not None and stretch.start < record.offset:
                    found.append((name, stretch, len(entries)))
                    stretch = next(stretches, None)
                entries.append(WalEntry((name, record.offset), record.stream, record.sequence,
                                        record.kind, record.payload))
            while stretch is not None:
                found.append((name, stretch, len(entries)))
                stretch = next(stretches, None)
            self._closed.add(name)
        damage = []
        for name, stretch, index in found:
            # Block ids only grow along the log (consecutive within a run), so the good
            # blocks around a damaged stretch bound the ids it held.
            item = WalDamage(
                name, stretch.start, stretch.end,
                stretch.header.sequence if stretch.header is not None else None,
                entries[index - 1].block_id if index > 0 else None,
                entries[index].block_id if index < len(entries) else None,
                stretch.torn,
                stretch.header is not None
                and stretch.end - stretch.start == record_size(stretch.header.length),
            )
            (log.info if item.torn else log.error)(
                "write-ahead log %s: %s %s", self.directory,
                "an unfinished last append, never used:" if item.torn else "damaged:",
                item.describe(),
            )
            damage.append(item)
        return WalContents(entries, damage)

    async def keep_only(self, refs: Iterable[WalRef]) -> None:
        """After recovery: the recovered blocks still needed are ``refs``; segments holding
        none of them are deleted now, the others once those blocks are released."""
        for segment, _ in refs:
            self._outstanding[segment] += 1
        for segment in sorted(self._closed):
            await self._retire(segment, closing=False)
