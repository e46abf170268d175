"""Cuts a receiver's stream of records into blocks, one per block interval.

A block holds either records (a list of Python objects: ``store``, ``store_many``,
``store_block`` of a list) or one raw block (undecoded bytes in one buffer, decoded on the
workers: ``store_lines``, ``store_block`` of a ``RawBlock``).

Memory is bounded twice: at most ``queue_size`` blocks wait for a batch (counting blocks
being written to the write-ahead log), and every store takes its bytes from the context's
``ByteBudget`` until the batch holding them completes; while either is spent ``store``
waits, so the pressure reaches the receiver (and through it the source) instead of growing
a buffer. A raw block counts its buffer's bytes; records count ``sys.getsizeof`` of each
(a shallow estimate).

With a write-ahead log every block is appended to it before it enters the queue, so a
block a batch uses is always durable. A raw block is then handed to ``place_raw`` (the
executor's ``place_raw_block``: under ``local[N]`` its buffer goes to shared memory, for
its worker to read in place) and queued in the form that returns. Block ids are given
out, written and queued under one lock, so the queue is always in block id order and a
batch takes a prefix of the ids: "every id below N was allocated" is then a complete
description of what batches took (the stream's recovery position).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from ..clock import Clock
from ..raw import RawBlock, RawLines, is_raw
from .block_payload import encode_block
from .budget import ByteBudget
from .rate_limiter import RateLimiter
from .wal import WalRef, WriteAheadLog

#: A block's content: its records, or one raw block.
BlockData = list[Any] | RawBlock


def data_bytes(data: BlockData) -> int:
    """What a block's content costs of the byte budget."""
    if is_raw(data):
        return data.nbytes  # type: ignore[union-attr]
    return sum(map(sys.getsizeof, data))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Block:
    stream_id: int
    block_id: int
    #: The records, or one raw block (see the module docstring).
    records: BlockData
    #: Where the block is in the write-ahead log (None without one).
    ref: WalRef | None = None
    #: Bytes it holds of the byte budget (given back when its batch completes).
    nbytes: int = 0

    @property
    def count(self) -> int:
        """How many records it holds."""
        return len(self.records)

    @property
    def partition(self) -> list[Any]:
        """The block as a partition: its records, or a list of its one raw block."""
        return [self.records] if is_raw(self.records) else self.records  # type: ignore[list-item,return-value]


class BlockGenerator:
    def __init__(
        self,
        stream_id: int,
        clock: Clock,
        block_interval: float,
        queue_size: int,
        rate_limiter: RateLimiter,
        *,
        budget: ByteBudget | None = None,
        wal: WriteAheadLog | None = None,
        first_block_id: int = 0,
        recovered: Iterable[Block] = (),
        place_raw: Callable[[Any], Awaitable[Any]] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._clock = clock
        self._interval = block_interval
        self._queue_size = queue_size
        self.rate_limiter = rate_limiter
        self.budget = budget or ByteBudget(1 << 62)
        self.wal = wal
        self._place_raw = place_raw
        self._buffer: list[Any] = []
        self._buffer_bytes = 0
        self._lines: list[bytes] = []  # raw lines waiting for the next cut
        self._line_count = 0
        self._lines_bytes = 0
        # Blocks recovered from the log but never allocated go first, even past the bound.
        self._blocks: deque[Block] = deque(recovered)
        self._writing = 0  # blocks being written to the log, counted against the bound
        self._lock = anyio.Lock()
        self._space = anyio.Event()
        self.next_block_id = first_block_id
        self.records_stored = 0

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def queued_blocks(self) -> int:
        return len(self._blocks)

    def _full(self) -> bool:
        return len(self._blocks) + self._writing >= self._queue_size

    async def _wait_for_space(self) -> None:
        while self._full():
            await self._space.wait()

    async def store(self, record: Any) -> None:
        if self._full():
            await self._wait_for_space()
        if self.rate_limiter.rate > 0:
            await self.rate_limiter.acquire(1)
        size = sys.getsizeof(record)
        if not self.budget.try_take(size):
            await self.budget.take(size)
        self._buffer.append(record)
        self._buffer_bytes += size
        self.records_stored += 1

    async def store_many(self, records: Iterable[Any]) -> None:
        items = list(records)
        await self._wait_for_space()
        await self.rate_limiter.acquire(len(items))
        size = data_bytes(items)
        await self.budget.take(size)
        self._buffer.extend(items)
        self._buffer_bytes += size
        self.records_stored += len(items)

    async def store_lines(self, data: bytes, count: int) -> None:
        """Store ``count`` undecoded lines, each followed by ``b"\n"`` in ``data``; the
        lines of one block interval become one ``RawLines`` block."""
        if not count:
            return
        await self._wait_for_space()
        await self.rate_limiter.acquire(count)
        await self.budget.take(len(data))
        self._lines.append(data)
        self._line_count += count
        self._lines_bytes += len(data)
        self.records_stored += count

    async def store_block(self, data: Iterable[Any] | RawBlock) -> Block:
        """Store ``data`` (records, or one raw block) as one block now, bypassing the
        buffer; returns once the block is durable (in the log, when there is one) and
        queued for a batch."""
        content: BlockData = data if is_raw(data) else list(data)  # type: ignore[arg-type,assignment]
        count = len(content)
        size = data_bytes(content)
        await self.rate_limiter.acquire(count)
        await self.budget.take(size)
        await self._wait_for_space()
        self._writing += 1  # reserved with no checkpoint since the wait: the bound holds
        try:
            block = await self._queue_block(content, size)
        finally:
            self._writing -= 1
        self.records_stored += count
        return block

    async def _queue_block(self, content: BlockData, size: int) -> Block:
        async with self._lock:
            block = await self._make_block(content, size)
            self._blocks.append(block)
            return block

    async def _make_block(self, content: BlockData, size: int) -> Block:
        """Give the next id, write the block to the log and place a raw block; call with
        the lock held.

        Shielded: once an id is taken the block must reach the queue (or the caller), or a
        later batch would take ids around a hole the log says was stored."""
        with anyio.CancelScope(shield=True):
            block_id = self.next_block_id
            self.next_block_id += 1
            ref = None
            if self.wal is not None:
                kind, payload = encode_block(content)
                ref = await self.wal.append(self.stream_id, block_id, payload, kind)
            if self._place_raw is not None and is_raw(content):
                content = await self._place_raw(content)
        return Block(self.stream_id, block_id, content, ref, size)

    def _buffered(self) -> bool:
        return bool(self._buffer or self._lines)

    async def _cut_buffers(self) -> list[Block]:
        """The buffers as blocks (records first, then raw lines); call with the lock held."""
        blocks = []
        if self._buffer:
            records, size = self._buffer, self._buffer_bytes
            self._buffer, self._buffer_bytes = [], 0
            blocks.append(await self._make_block(records, size))
        if self._lines:
            lines = RawLines(b"".join(self._lines), self._line_count)
            size = self._lines_bytes
            self._lines, self._line_count, self._lines_bytes = [], 0, 0
            blocks.append(await self._make_block(lines, size))
        return blocks

    async def cut(self) -> None:
        """Turn the buffers into blocks, if there is room; called on every block tick."""
        if not self._buffered() or self._full():
            return
        self._writing += 1
        try:
            async with self._lock:
                # Taken under the lock: a batch cut (take_blocks) in between must not miss
                # records that left the buffer but are not yet in the queue.
                self._blocks.extend(await self._cut_buffers())
        finally:
            self._writing -= 1

    async def take_blocks(self) -> list[Block]:
        """Every block not yet allocated to a batch, the buffers included (so a batch holds
        everything stored before it); frees the queue for the receiver."""
        async with self._lock:
            blocks = list(self._blocks)
            self._blocks.clear()
            blocks.extend(await self._cut_buffers())
        if blocks:
            self._space.set()
            self._space = anyio.Event()
        return blocks

    def has_pending(self) -> bool:
        return bool(self._buffered() or self._blocks or self._writing)

    async def run(self) -> None:
        """Cut a block every block interval, until cancelled."""
        deadline = self._clock.now()
        while True:
            deadline += self._interval
            await self._clock.sleep_until(deadline)
            await self.cut()
            if self.wal is not None:
                await self.wal.tick()
