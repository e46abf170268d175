"""Runs every receiver of the graph and allocates their blocks to batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from ..clock import Clock
from ..conf import StreamingConf
from ..scheduler.listener import ListenerBus
from .block_generator import Block, BlockGenerator
from .rate_limiter import RateLimiter
from .supervisor import ReceiverSupervisor

if TYPE_CHECKING:
    from ..dstream.input import ReceiverInputDStream


class ReceiverTracker:
    def __init__(self, conf: StreamingConf, clock: Clock, bus: ListenerBus) -> None:
        self._conf = conf
        self._clock = clock
        self._bus = bus
        self.generators: dict[int, BlockGenerator] = {}
        self.supervisors: dict[int, ReceiverSupervisor] = {}
        self._allocations: dict[int, dict[int, list[Block]]] = {}
        self._scope: anyio.CancelScope | None = None

    async def run(
        self,
        streams: list[ReceiverInputDStream],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start a supervisor and a block generator per receiver stream; run until stopped."""
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            for stream in streams:
                blocks = BlockGenerator(
                    stream.id,
                    self._clock,
                    self._conf.block_interval,
                    self._conf.block_queue_size,
                    RateLimiter(self._clock, self._conf.receiver_max_rate),
                )
                supervisor = ReceiverSupervisor(
                    stream.receiver, stream.id, blocks, self._clock, self._bus,
                    self._conf.receiver_restart_delay,
                )
                self.generators[stream.id] = blocks
                self.supervisors[stream.id] = supervisor
                tg.start_soon(supervisor.run, name=f"receiver {stream.name}")
                tg.start_soon(blocks.run, name=f"block generator {stream.name}")
            task_status.started()
            await anyio.sleep_forever()

    async def stop_receivers(self, timeout: float) -> None:
        """Stop every receiver, wait for them to finish (bounded), then stop the timers."""
        for supervisor in self.supervisors.values():
            supervisor.stop()
        with anyio.move_on_after(timeout):
            for supervisor in self.supervisors.values():
                await supervisor.finished.wait()
        if self._scope is not None:
            self._scope.cancel()

    def allocate(self, time_ms: int) -> None:
        """Assign every block not yet allocated to the batch at ``time_ms``."""
        self._allocations[time_ms] = {
            stream_id: generator.take_blocks() for stream_id, generator in self.generators.items()
        }

    def blocks_of_batch(self, time_ms: int, stream_id: int) -> list[Block]:
        return self._allocations.get(time_ms, {}).get(stream_id, [])

    def has_unallocated_blocks(self) -> bool:
        return any(g.has_pending() for g in self.generators.values())

    def forget_batch(self, time_ms: int) -> None:
        """Drop the allocation of a completed batch (its RDDs hold the records they need)."""
        self._allocations.pop(time_ms, None)
