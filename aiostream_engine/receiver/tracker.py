"""Runs every receiver of the graph and allocates their blocks to batches.

Each receiver's stream has one block generator, and, with the write-ahead log on, one log.
Blocks of a batch are released from the log once the batch has completed and the
checkpoint's history horizon has passed it (so a recovery that recomputes batches after an
older state checkpoint, the newer one being damaged, still finds their blocks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from ..clock import Clock
from ..conf import StreamingConf
from ..scheduler.listener import ListenerBus
from ..scheduler.rate.controller import receiver_rate
from .block_generator import Block, BlockGenerator
from .budget import ByteBudget
from .rate_limiter import RateLimiter
from .supervisor import ReceiverSupervisor
from .wal import WalRef, WriteAheadLog

if TYPE_CHECKING:
    from ..dstream.input import BlockInputDStream, ReceiverInputDStream


class _Recovered:
    """What a block stream brings back from its log before the generators start."""

    def __init__(self, wal: WriteAheadLog, first_block_id: int, unallocated: list[Block]):
        self.wal = wal
        self.first_block_id = first_block_id
        self.unallocated = unallocated


class ReceiverTracker:
    def __init__(self, conf: StreamingConf, clock: Clock, bus: ListenerBus) -> None:
        self._conf = conf
        self._clock = clock
        self._bus = bus
        self.generators: dict[int, BlockGenerator] = {}
        self.supervisors: dict[int, ReceiverSupervisor] = {}
        self._allocations: dict[int, dict[int, list[Block]]] = {}
        #: Allocations recovered from the log, used instead of new blocks at their time.
        self._restored: dict[int, dict[int, list[Block]]] = {}
        self._prepared: dict[int, _Recovered] = {}
        #: Per stream: every block id below this was allocated to a batch.
        self.allocated_through: dict[int, int] = {}
        #: Completed batches whose log blocks wait for a state checkpoint to cover them.
        self._unreleased: dict[int, list[tuple[int, WalRef]]] = {}
        self._scope: anyio.CancelScope | None = None
        #: Bytes received and not yet finished with, shared by every receiver.
        self.budget = ByteBudget(conf.receiver_max_pending_bytes)

    # ---- set-up and recovery (before run) -----------------------------------------------

    def prepare_stream(
        self, stream_id: int, wal: WriteAheadLog, first_block_id: int, unallocated: list[Block]
    ) -> None:
        """Give a block stream its log, the id its next block takes, and the blocks found in
        the log that no batch had taken (they go to the next batch)."""
        self._prepared[stream_id] = _Recovered(wal, first_block_id, unallocated)
        self.allocated_through[stream_id] = first_block_id
        self.budget.force(sum(block.nbytes for block in unallocated))

    def restore_allocation(self, time_ms: int, stream_id: int, blocks: list[Block]) -> None:
        """Batch ``time_ms`` had these blocks before the crash; it gets them again."""
        self._restored.setdefault(time_ms, {})[stream_id] = blocks
        self.budget.force(sum(block.nbytes for block in blocks))

    def _generator(
        self, stream: BlockInputDStream, place_raw: Callable[[Any], Awaitable[Any]] | None
    ) -> BlockGenerator:
        recovered = self._prepared.pop(stream.id, None)
        generator = BlockGenerator(
            stream.id,
            self._clock,
            self._conf.block_interval,
            self._conf.block_queue_size,
            self._rate_limiter(stream),
            budget=self.budget,
            wal=recovered.wal if recovered else None,
            first_block_id=recovered.first_block_id if recovered else 0,
            recovered=recovered.unallocated if recovered else (),
            place_raw=place_raw,
        )
        self.generators[stream.id] = generator
        return generator

    def _rate_limiter(self, stream: BlockInputDStream) -> RateLimiter:
        """At most ``receiver_max_rate``; with backpressure, the stream's bound split over
        its receivers (and below that cap), following every new estimate."""
        max_rate = self._conf.receiver_max_rate
        controller = stream.rate_controller
        if controller is None:
            return RateLimiter(self._clock, max_rate)
        share = controller.num_receivers
        limiter = RateLimiter(self._clock, receiver_rate(controller.latest_rate(), share, max_rate))
        controller.subscribe(lambda _, rate: limiter.set_rate(receiver_rate(rate, share, max_rate)))
        return limiter

    # ---- running ------------------------------------------------------------------------

    async def run(
        self,
        streams: list[ReceiverInputDStream],
        place_raw: Callable[[Any], Awaitable[Any]] | None = None,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start a supervisor and a block generator per receiver; run until stopped.
        ``place_raw``: what each raw block of a stream decoded on the workers goes through
        once stored (``BlockGenerator``)."""
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            for stream in streams:
                blocks = self._generator(stream, place_raw if stream.decodes_on_workers else None)
                supervisor = ReceiverSupervisor(
                    stream.receiver, stream.id, blocks, self._clock, self._bus,
                    self._conf.receiver_restart_delay,
                )
                self.supervisors[stream.id] = supervisor
                tg.start_soon(supervisor.run, name=f"receiver {stream.name}")
                tg.start_soon(blocks.run, name=f"block generator {stream.id}")
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

    # ---- allocation ---------------------------------------------------------------------

    async def allocate(self, time_ms: int, live: bool = True) -> None:
        """Assign every block not yet allocated to the batch at ``time_ms`` (or, for a batch
        recovered from the log, the blocks it had). A batch of before a restart (``live``
        False) gets only what the log gave back: blocks received since belong to the
        batches to come, not to a past batch replayed (without output, or with it)."""
        restored = self._restored.pop(time_ms, {})
        allocation: dict[int, list[Block]] = {}
        for stream_id, generator in self.generators.items():
            if stream_id in restored:
                allocation[stream_id] = restored.pop(stream_id)
                continue
            if not live:
                allocation[stream_id] = []
                continue
            allocation[stream_id] = await generator.take_blocks()
            self.allocated_through[stream_id] = generator.next_block_id
        allocation.update(restored)  # streams whose generator is not running (yet)
        self._allocations[time_ms] = allocation

    def blocks_of_batch(self, time_ms: int, stream_id: int) -> list[Block]:
        return self._allocations.get(time_ms, {}).get(stream_id, [])

    def has_unallocated_blocks(self) -> bool:
        return any(g.has_pending() for g in self.generators.values())

    async def forget_batch(self, time_ms: int, history_from_ms: int | None) -> None:
        """Drop the allocation of a completed batch (its RDDs hold the records they need);
        release from the logs the blocks of completed batches at or before
        ``history_from_ms`` (the checkpoint's history horizon: recovery never recomputes
        those; None: it may recompute from the first batch, keep everything)."""
        allocation = self._allocations.pop(time_ms, {})
        self.budget.release(sum(b.nbytes for blocks in allocation.values() for b in blocks))
        refs = [
            (stream_id, block.ref)
            for stream_id, blocks in allocation.items()
            for block in blocks
            if block.ref is not None
        ]
        if refs:
            self._unreleased[time_ms] = refs
        if history_from_ms is None:
            return
        for done in sorted(t for t in self._unreleased if t <= history_from_ms):
            await self._release(self._unreleased.pop(done))

    async def _release(self, refs: Iterable[tuple[int, WalRef]]) -> None:
        by_stream: dict[int, list[WalRef]] = {}
        for stream_id, ref in refs:
            by_stream.setdefault(stream_id, []).append(ref)
        for stream_id, stream_refs in by_stream.items():
            generator = self.generators.get(stream_id)
            if generator is not None and generator.wal is not None:
                await generator.wal.release(stream_refs)
