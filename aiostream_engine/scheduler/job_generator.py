"""The batch clock: at every batch time, allocate input and hand the batch's jobs over."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from ..clock import Clock


class JobGenerator:
    """Ticks at multiples of the batch interval; ``generate(t)`` does the work of one tick.

    A tick is never cancelled half-way: stopping interrupts only the wait for the next one.
    """

    def __init__(self, clock: Clock, batch_ms: int, generate: Callable[[int], Awaitable[None]]):
        self._clock = clock
        self._batch_ms = batch_ms
        self._generate = generate
        self._sleep_scope: anyio.CancelScope | None = None
        self._stopping = False
        self._stopped = anyio.Event()
        self.last_generated_ms: int | None = None
        self.first_batch_ms: int | None = None

    def first_batch_time(self) -> int:
        """The next multiple of the batch interval strictly after now (Spark's rule)."""
        now_ms = self._clock.now() * 1000
        return (math.floor(now_ms / self._batch_ms) + 1) * self._batch_ms

    async def run(self, first_ms: int, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.first_batch_ms = first_ms
        next_ms = first_ms
        task_status.started()
        try:
            while not self._stopping:
                with anyio.CancelScope() as scope:
                    self._sleep_scope = scope
                    await self._clock.sleep_until(next_ms / 1000)
                self._sleep_scope = None
                if self._stopping:
                    break
                await self.generate(next_ms)
                next_ms += self._batch_ms
        finally:
            self._stopped.set()

    async def generate(self, time_ms: int) -> None:
        self.last_generated_ms = time_ms
        await self._generate(time_ms)

    def next_batch_ms(self) -> int:
        assert self.first_batch_ms is not None
        if self.last_generated_ms is None:
            return self.first_batch_ms
        return self.last_generated_ms + self._batch_ms

    async def stop(self) -> None:
        """Stop ticking; returns once a tick in progress has finished."""
        self._stopping = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()
        await self._stopped.wait()
