"""The receivers' byte budget: stores wait while received data no batch has finished with
fills it, and go on as batches complete."""

from __future__ import annotations

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingConf, StreamingContext
from aiostream_engine.raw import RawLines
from aiostream_engine.receiver.base import Receiver
from aiostream_engine.receiver.budget import ByteBudget
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio


class Blocks(Receiver):
    """Stores the raw blocks it is given, one after the other (no decoder: the stream's
    records are the blocks themselves)."""

    def __init__(self, blocks: list[RawLines]) -> None:
        super().__init__()
        self.blocks = blocks
        self.stored = 0

    async def on_start(self) -> None:
        for block in self.blocks:
            await self.store_block(block)
            self.stored += 1
        await anyio.sleep_forever()


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_stores_wait_for_the_batches_holding_the_budget_to_complete() -> None:
    lines = RawLines.of([b"x" * 59])  # 60 bytes
    receiver = Blocks([lines, lines, lines])
    async with StreamingContext(1.0, master="local", clock=ManualClock(0.0),
                                conf={"receiver_max_pending_bytes": "100b"}) as ssc:
        out = collect_batches(ssc.receiver_stream(receiver).map(len))
        await ssc.start()
        await settle()
        budget = ssc._receiver_tracker.budget
        assert (receiver.stored, budget.used) == (1, 60)  # the second does not fit
        await advance_batches(ssc, 1)  # batch 1 completes: its 60 bytes come back
        await settle()
        assert (receiver.stored, budget.used) == (2, 60)
        await advance_batches(ssc, 2)
        await settle()
    assert receiver.stored == 3
    assert budget.peak == 60 and budget.waits == 2
    assert [len(records) for _, records in out] == [1, 1, 1]


async def test_a_block_larger_than_the_budget_goes_in_alone() -> None:
    budget = ByteBudget(10)
    await budget.take(25)  # nothing held: it goes in
    assert not budget.try_take(1)
    budget.release(25)
    assert budget.try_take(10) and not budget.try_take(1)


def test_the_budget_takes_spark_sizes() -> None:
    def size(text: str) -> int:
        return StreamingConf.of({"receiver_max_pending_bytes": text}).receiver_max_pending_bytes

    assert (size("512m"), size("1g"), size("64kb"), size("4096")) == (512 << 20, 1 << 30, 64 << 10, 4096)
    assert StreamingConf().receiver_max_pending_bytes == 256 << 20
