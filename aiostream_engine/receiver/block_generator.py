"""Cuts a receiver's stream of records into blocks, one per block interval.

Memory is bounded: at most ``queue_size`` blocks wait for a batch, and while they are
all taken ``store`` waits, so the pressure reaches the receiver (and through it the source)
instead of growing a buffer.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from ..clock import Clock
from .rate_limiter import RateLimiter


@dataclass(frozen=True)
class Block:
    stream_id: int
    block_id: int
    records: list[Any]


class BlockGenerator:
    def __init__(
        self,
        stream_id: int,
        clock: Clock,
        block_interval: float,
        queue_size: int,
        rate_limiter: RateLimiter,
    ) -> None:
        self.stream_id = stream_id
        self._clock = clock
        self._interval = block_interval
        self._queue_size = queue_size
        self.rate_limiter = rate_limiter
        self._buffer: list[Any] = []
        self._blocks: deque[Block] = deque()
        self._space = anyio.Event()
        self._ids = itertools.count()
        self.records_stored = 0

    @property
    def queued_blocks(self) -> int:
        return len(self._blocks)

    async def _wait_for_space(self) -> None:
        while len(self._blocks) >= self._queue_size:
            await self._space.wait()

    async def store(self, record: Any) -> None:
        if len(self._blocks) >= self._queue_size:
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

    def cut(self) -> None:
        """Turn the buffer into a block, if there is room; called on every block tick and
        by the job generator at batch time, so a batch holds everything stored before it."""
        if self._buffer and len(self._blocks) < self._queue_size:
            records, self._buffer = self._buffer, []
            self._blocks.append(Block(self.stream_id, next(self._ids), records))

    def take_blocks(self) -> list[Block]:
        """Every block not yet allocated to a batch; frees the queue for the receiver."""
        blocks = list(self._blocks)
        self._blocks.clear()
        if self._buffer:
            records, self._buffer = self._buffer, []
            blocks.append(Block(self.stream_id, next(self._ids), records))
        if blocks:
            self._space.set()
            self._space = anyio.Event()
        return blocks

    def has_pending(self) -> bool:
        return bool(self._buffer or self._blocks)

    async def run(self) -> None:
        """Cut a block every block interval, until cancelled."""
        deadline = self._clock.now()
        while True:
            deadline += self._interval
            await self._clock.sleep_until(deadline)
            self.cut()
