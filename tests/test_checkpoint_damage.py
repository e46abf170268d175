"""Damaged checkpoint files: recovery falls back only where it can recompute the same
results, and fails loudly (CheckpointDamagedError) where it cannot; another program's
directory is a CheckpointMismatchError; the write-ahead log is never replayed as new data.

The job: a logged receiver, running totals per key (update_state_by_key) written out
every batch, a state checkpoint every 2 batches. A run is cut (the 'crash') while one batch
is pending, files are damaged, and ``get_or_create`` resumes; its outputs are compared with
a run that never crashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.errors import CheckpointDamagedError
from aiostream_engine.recovery import CheckpointMismatchError
from tests.wal_receiver import ReliableReceiver, feed, wal_conf

pytestmark = pytest.mark.anyio
LAST = 8


def readings(k: int) -> list[tuple[str, int]]:
    """Batch k's input: deterministic, a few keys."""
    return [(f"dev-{(k * 3 + i) % 4}", k * 10 + i) for i in range(k % 3 + 1)]


def add_up(new: list[int], total: int | None) -> int:
    return (total or 0) + sum(new)


class Job:
    def __init__(self, directory: Path, hold: int | None = None, **conf: Any) -> None:
        self.directory = str(directory)
        self.clock = ManualClock(0.0)
        self.receiver = ReliableReceiver()
        self.outputs: dict[int, list[Any]] = {}
        self.hold = hold
        self.conf = wal_conf(checkpoint_interval=2.0, receiver_wal_roll_interval=60.0, **conf)

    def setup(self) -> StreamingContext:
        ssc = StreamingContext(1.0, master="local", clock=self.clock, conf=self.conf)
        ssc.checkpoint(self.directory)

        async def keep(time: float, rdd: Any) -> None:
            if round(time) == self.hold:
                await anyio.sleep_forever()
            self.outputs[round(time)] = sorted(await rdd.acollect())

        ssc.receiver_stream(self.receiver).update_state_by_key(add_up).foreach_rdd(keep)
        return ssc

    async def run(self, first: int, last: int) -> None:
        """Batches ``first``..``last``: feed each one's readings, then let it run."""
        async with StreamingContext.get_or_create(self.directory, self.setup) as ssc:
            self.clock.set_time(first - 0.5)
            await ssc.start()
            for k in range(first, last + 1):
                await feed(self.receiver, readings(k))
                self.clock.set_time(k)
                if k == self.hold:
                    await anyio.wait_all_tasks_blocked()
                    return  # the crash: batch k never completes
                with anyio.fail_after(30):
                    await ssc._job_scheduler.wait_for_batch(k * 1000)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[Any]]:
    job = Job(tmp_path_factory.mktemp("reference"))
    anyio.run(job.run, 1, LAST)
    assert sorted(job.outputs) == list(range(1, LAST + 1))
    return job.outputs


async def crash_at(directory: Path, batch: int) -> None:
    """Run batches 1..batch-1, then crash while ``batch`` runs (its blocks are logged)."""
    await Job(directory, hold=batch).run(1, batch)


async def resume(directory: Path, from_batch: int, **conf: Any) -> dict[int, list[Any]]:
    job = Job(directory, **conf)
    async with StreamingContext.get_or_create(job.directory, job.setup) as ssc:
        job.clock.set_time(from_batch - 0.5)
        await ssc.start()
        with anyio.fail_after(30):
            job.clock.set_time(from_batch)  # the pending batch runs again (at once, if recorded)
            await ssc._job_scheduler.wait_for_batch(from_batch * 1000)
            for k in range(from_batch + 1, LAST + 1):
                await feed(job.receiver, readings(k))
                job.clock.set_time(k)
                await ssc._job_scheduler.wait_for_batch(k * 1000)
    return job.outputs


def damage(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    for i in range(len(blob) // 2, len(blob) // 2 + 16):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))


def newest(directory: Path, pattern: str) -> list[Path]:
    def time(p: Path) -> int:
        return int(p.name.split("-")[1].split(".")[0])

    files = sorted(directory.glob(pattern), key=time)
    return [p for p in files if time(p) == time(files[-1])]


async def test_resuming_an_undamaged_checkpoint_gives_the_uncrashed_results(
    tmp_path: Path, reference: dict[int, list[Any]]
) -> None:
    await crash_at(tmp_path, 7)
    assert await resume(tmp_path, 7) == {k: reference[k] for k in range(7, LAST + 1)}


async def test_a_damaged_newest_state_checkpoint_falls_back_to_the_one_before(
    tmp_path: Path, reference: dict[int, list[Any]]
) -> None:
    """State checkpoints at 2, 4, 6; 6 is damaged: recovery restores 4 and recomputes
    batches 5 and 6 from the log, whose blocks were kept for exactly this."""
    await crash_at(tmp_path, 7)
    [state] = newest(tmp_path, "state-*.ckpt")
    assert state.name == "state-6000.ckpt"
    damage(state)
    assert await resume(tmp_path, 7) == {k: reference[k] for k in range(7, LAST + 1)}


async def test_the_only_state_checkpoint_damaged_recomputes_from_the_first_batch(
    tmp_path: Path, reference: dict[int, list[Any]]
) -> None:
    await crash_at(tmp_path, 3)
    [state] = tmp_path.glob("state-*.ckpt")
    damage(state)
    assert await resume(tmp_path, 3) == {k: reference[k] for k in range(3, LAST + 1)}


async def test_no_usable_state_checkpoint_the_history_reaches_is_refused(tmp_path: Path) -> None:
    await crash_at(tmp_path, 7)
    for state in tmp_path.glob("state-*.ckpt"):
        damage(state)
    job = Job(tmp_path)
    with pytest.raises(CheckpointDamagedError, match="no usable state checkpoint at or after 2000 ms"):
        StreamingContext.get_or_create(job.directory, job.setup)


async def test_one_damaged_copy_of_the_newest_metadata_loses_nothing(
    tmp_path: Path, reference: dict[int, list[Any]]
) -> None:
    await crash_at(tmp_path, 7)
    first_copy = min(newest(tmp_path, "metadata-*.ckpt"), key=lambda p: len(p.name))
    damage(first_copy)
    assert await resume(tmp_path, 7) == {k: reference[k] for k in range(7, LAST + 1)}


async def test_the_newest_metadata_damaged_in_every_copy_is_refused_unless_accepted(
    tmp_path: Path, reference: dict[int, list[Any]]
) -> None:
    await crash_at(tmp_path, 7)
    copies = newest(tmp_path, "metadata-*.ckpt")
    assert len(copies) == 2
    for path in copies:
        damage(path)
    job = Job(tmp_path)
    with pytest.raises(CheckpointDamagedError, match="unusable in every copy") as refused:
        StreamingContext.get_or_create(job.directory, job.setup)
    assert "Set accept_data_loss=True to resume from metadata" in str(refused.value)
    # Accepted: the metadata before it ends at batch 6; batch 7's blocks come back as not
    # yet in any batch, and batch 7 takes them (here nothing else arrived in between).
    outputs = await resume(tmp_path, 7, accept_data_loss=True)
    assert outputs == {k: reference[k] for k in range(7, LAST + 1)}


async def test_every_metadata_checkpoint_damaged_replays_nothing_as_new_data(tmp_path: Path) -> None:
    """The issue's finding: the whole log was replayed as new data (twice the rows)."""
    await crash_at(tmp_path, 7)
    for path in tmp_path.glob("metadata-*.ckpt"):
        damage(path)
    job = Job(tmp_path)
    with pytest.raises(CheckpointDamagedError, match="none of the 3 metadata checkpoint"):
        StreamingContext.get_or_create(job.directory, job.setup)


async def test_another_programs_checkpoint_directory_is_a_mismatch_error(tmp_path: Path) -> None:
    """The issue's finding: before the first state checkpoint, or with the same stream
    names but another input, recovery crashed with a KeyError inside an ExceptionGroup."""
    await crash_at(tmp_path, 2)  # no state checkpoint yet

    def other_program() -> StreamingContext:
        ssc = StreamingContext(1.0, master="local", clock=ManualClock(0.0))
        ssc.queue_stream([[("dev-0", 1)]]).update_state_by_key(add_up).foreach_rdd(lambda r: None)
        ssc.checkpoint(str(tmp_path))
        return ssc

    with pytest.raises(CheckpointMismatchError) as mismatch:
        StreamingContext.get_or_create(str(tmp_path), other_program)
    assert str(mismatch.value) == (
        "input stream 0 of the checkpoint was 'ReceiverInputDStream of ReliableReceiver' and "
        "is 'QueueInputDStream': this checkpoint directory belongs to another program (or an "
        "incompatible version of this one); use another directory"
    )
