"""Cuts a receiver's stream of records into blocks, one per block interval.

Memory is bounded: at most ``queue_size`` blocks wait for a batch (counting blocks being
written to the write-ahead log), and while they are all taken ``store`` waits, so the
pressure reaches the receiver (and through it the source) instead of growing a buffer.

With a write-ahead log every block is appended to it before it enters the queue, so a
block a batch uses is always durable. Block ids are given out, written and queued under
one lock, so the queue is always in block id order and a batch takes a prefix of the ids:
"every id below N was allocated" is then a complete description of what batches took
(the stream's recovery position).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from ..clock import Clock
from .rate_limiter import RateLimiter
from .wal import WalRef, WriteAheadLog


@dataclass(frozen=True)
class Block:
    stream_id: int
    block_id: int
    records: list[Any]
    #: Where the block is in the write-ahead log (None without one).
    ref: WalRef | None = None


class BlockGenerator:
    def __init__(
        self,
        stream_id: int,
        clock: Clock,
        block_interval: float,
        queue_size: int,
        rate_limiter: RateLimiter,
        *,
        wal: WriteAheadLog | None = None,
        first_block_id: int = 0,
        recovered: Iterable[Block] = (),
    ) -> None:
        self.stream_id = stream_id
        self._clock = clock
        self._interval = block_interval
        self._queue_size = queue_size
        self.rate_limiter = rate_limiter
        self.wal = wal
        self._buffer: list[Any] = []
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
        self._buffer.append(record)
        self.records_stored += 1

    async def store_many(self, records: Iterable[Any]) -> None:
        items = list(records)
        await self._wait_for_space()
        await self.rate_limiter.acquire(len(items))
        self._buffer.extend(items)
        self.records_stored += len(items)

    async def store_block(self, records: Iterable[Any]) -> Block:
        """Store ``records`` as one block now, bypassing the buffer; returns once the block
        is durable (in the log, when there is one) and queued for a batch."""
        items = list(records)
        await self.rate_limiter.acquire(len(items))
        await self._wait_for_space()
        self._writing += 1  # reserved with no checkpoint since the wait: the bound holds
        try:
            block = await self._queue_block(items)
        finally:
            self._writing -= 1
        self.records_stored += len(items)
        return block

    async def _queue_block(self, items: list[Any]) -> Block:
        async with self._lock:
            block = await self._make_block(items)
            self._blocks.append(block)
            return block

    async def _make_block(self, items: list[Any]) -> Block:
        """Give the next id and write the block to the log; call with the lock held.

        Shielded: once an id is taken the block must reach the queue (or the caller), or a
        later batch would take ids around a hole the log says was stored."""
        with anyio.CancelScope(shield=True):
            block_id = self.next_block_id
            self.next_block_id += 1
            ref = None
            if self.wal is not None:
                ref = await self.wal.append(self.stream_id, block_id, items)
        return Block(self.stream_id, block_id, items, ref)

    async def cut(self) -> None:
        """Turn the buffer into a block, if there is room; called on every block tick."""
        if not self._buffer or self._full():
            return
        self._writing += 1
        try:
            async with self._lock:
                # Taken under the lock: a batch cut (take_blocks) in between must not miss
                # records that left the buffer but are not yet in the queue.
                if self._buffer:
                    records, self._buffer = self._buffer, []
                    self._blocks.append(await self._make_block(records))
        finally:
            self._writing -= 1

    async def take_blocks(self) -> list[Block]:
        """Every block not yet allocated to a batch, the buffer included (so a batch holds
        everything stored before it); frees the queue for the receiver."""
        async with self._lock:
            blocks = list(self._blocks)
            self._blocks.clear()
            if self._buffer:
                records, self._buffer = self._buffer, []
                blocks.append(await self._make_block(records))
        if blocks:
            self._space.set()
            self._space = anyio.Event()
        return blocks

    def has_pending(self) -> bool:
        return bool(self._buffer or self._blocks or self._writing)

    async def run(self) -> None:
        """Cut a block every block interval, until cancelled."""
        deadline = self._clock.now()
        while True:
            deadline += self._interval
            await self._clock.sleep_until(deadline)
            await self.cut()
            if self.wal is not None:
                await self.wal.tick()
