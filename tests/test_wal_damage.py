"""Recovery from a damaged write-ahead log: only the damaged blocks are missing, and they
are named (block, batch) in a DataLossError, unless accept_data_loss resumes without them."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.errors import DataLossError
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

pytestmark = pytest.mark.anyio


class Job:
    """A context with one logged receiver; batch ``hold`` never finishes (the crash)."""

    def __init__(self, directory: Path, hold: float | None = None, **conf: Any) -> None:
        self.directory = str(directory)
        self.clock = ManualClock(0.0)
        self.receiver = ReliableReceiver()
        self.outputs: list[tuple[float, list[int]]] = []
        self.hold = hold
        self.conf = wal_conf(checkpoint_interval=1.0, receiver_wal_roll_interval=60.0, **conf)

    def setup(self) -> StreamingContext:
        ssc = StreamingContext(1.0, master="local", clock=self.clock, conf=self.conf)
        ssc.checkpoint(self.directory)

        async def keep(time: float, rdd: Any) -> None:
            if time == self.hold:
                await anyio.sleep_forever()
            self.outputs.append((time, sorted(await rdd.acollect())))

        ssc.receiver_stream(self.receiver).foreach_rdd(keep)
        return ssc


async def crash_with_pending_and_unallocated_blocks(directory: Path) -> Job:
    """Batches 1-3 complete with [1], [2], [3] (a state checkpoint each: the history then
    reaches back to batch 1 only); batch 4 takes blocks [4] and [5] and never completes;
    block [6] arrives after batch 4 was cut. Then the process 'dies'."""
    job = Job(directory, hold=4.0)
    async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
        await ssc.start()
        for k in (1, 2, 3):
            await feed(job.receiver, [k])
            job.clock.set_time(k)
            await ssc._job_scheduler.wait_for_batch(k * 1000)
        await feed(job.receiver, [4])
        await feed(job.receiver, [5])
        job.clock.set_time(4.0)
        await anyio.wait_all_tasks_blocked()
        await feed(job.receiver, [6])
    assert job.outputs == [(1.0, [1]), (2.0, [2]), (3.0, [3])]
    return job


def damage_block(directory: Path, records: list[int], *, header: bool = False) -> str:
    """Flip the payload bytes (or, with ``header``, 8 bytes of the record header before
    them) of the logged block holding ``records``; returns its segment."""
    payload = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    for segment in sorted((directory / "receivedData" / "0").iterdir()):
        blob = bytearray(segment.read_bytes())
        at = blob.find(payload)
        if at >= 0:
            span = range(at - 8, at) if header else range(at, at + len(payload))
            for i in span:
                blob[i] ^= 0xFF
            segment.write_bytes(bytes(blob))
            return segment.name
    raise AssertionError(f"no logged block holds {records}")


async def resume(directory: Path, **conf: Any) -> Job:
    job = Job(directory, **conf)
    job.clock.set_time(4.5)
    async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
        await ssc.start()
        await ssc._job_scheduler.wait_for_batch(4000)
        job.clock.set_time(5.0)
        await ssc._job_scheduler.wait_for_batch(5000)
    return job


async def test_an_undamaged_log_gives_every_batch_its_blocks_back(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    job = await resume(tmp_path)
    assert job.outputs == [(4.0, [4, 5]), (5.0, [6])]


async def test_a_damaged_block_of_a_pending_batch_is_named_with_its_batch(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    segment = damage_block(tmp_path, [4])
    job = Job(tmp_path)
    with pytest.raises(DataLossError) as lost:
        async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
            await ssc.start()
    [what] = lost.value.lost
    assert what.startswith(f"block 3 of batch 4 s ({segment} @ ")
    assert "Set accept_data_loss=True to resume without them" in str(lost.value)
    assert job.outputs == []


async def test_accepting_the_loss_resumes_without_only_that_block(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    damage_block(tmp_path, [4])
    job = await resume(tmp_path, accept_data_loss=True)
    assert job.outputs == [(4.0, [5]), (5.0, [6])]


async def test_a_damaged_block_no_batch_took_yet_is_named(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    segment = damage_block(tmp_path, [6])
    job = Job(tmp_path)
    with pytest.raises(DataLossError) as lost:
        async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
            await ssc.start()
    [what] = lost.value.lost
    assert what.startswith(f"block 5 ({segment} bytes ")
    assert what.endswith("received after the last batch was cut")
    job = await resume(tmp_path, accept_data_loss=True)
    assert job.outputs == [(4.0, [4, 5]), (5.0, [])]


async def test_a_damaged_header_is_named_by_the_good_blocks_around_it(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    segment = damage_block(tmp_path, [5], header=True)
    job = Job(tmp_path)
    with pytest.raises(DataLossError) as lost:
        async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
            await ssc.start()
    assert lost.value.lost[0].startswith(f"block 4 of batch 4 s ({segment} @ ")
    assert len(lost.value.lost) == 1  # blocks 3 and 5 around it are good: only 4 is lost


async def test_damage_to_blocks_no_batch_needs_any_more_loses_nothing(tmp_path: Path) -> None:
    await crash_with_pending_and_unallocated_blocks(tmp_path)
    damage_block(tmp_path, [1])  # batch 1: the oldest state checkpoint kept covers it
    job = await resume(tmp_path)
    assert job.outputs == [(4.0, [4, 5]), (5.0, [6])]
