"""State and window intermediates live on the executors (executor/block_store.py).

On a process pool the driver must not copy all state every batch; a worker that dies must
not lose state (its blocks come back from their disk copies); memory and disk stay bounded
by what is live; a disk copy that cannot be written (a full disk) degrades to memory only
and, if that worker then dies, fails the batch with an error naming the lost partition.
"""

from __future__ import annotations

import logging
import operator
import os
import pickle
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import JobFailedError, ManualClock, StateSpec, StreamingContext
from aiostream_engine.executor.block_store import (
    BlockLostError,
    BlockRef,
    BlockStore,
    remove_disk_copies,
)
from aiostream_engine.executor.process_pool import ProcessPoolBackend
from aiostream_engine.testing import advance_batches, collect_batches

# ---- the store on its own ------------------------------------------------------------------


def test_a_block_comes_back_from_its_disk_copy_in_another_process_store(tmp_path: Path) -> None:
    ref = BlockRef("state-1", 3, str(tmp_path))
    worker = BlockStore()
    worker.put(ref, [("a", 1), ("b", 2)])
    assert worker.get(ref) == [("a", 1), ("b", 2)]
    replacement = BlockStore()  # a new worker: nothing in memory
    assert replacement.get(ref) == [("a", 1), ("b", 2)]
    worker.drop([ref.id])
    replacement.drop([ref.id])
    remove_disk_copies([ref])
    assert os.listdir(tmp_path) == []
    with pytest.raises(BlockLostError, match="partition 3"):
        BlockStore().get(ref)


def test_an_unwritable_disk_copy_keeps_the_block_in_memory_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_directory = tmp_path / "full"
    not_a_directory.write_text("")  # writing under it fails, as on a full disk
    ref = BlockRef("window-7", 1, str(not_a_directory))
    store = BlockStore()
    with caplog.at_level(logging.WARNING):
        store.put(ref, [("k", 5)])
    assert "kept in memory only" in caplog.text and "window-7" in caplog.text
    assert store.get(ref) == [("k", 5)]
    with pytest.raises(BlockLostError, match="never written"):
        BlockStore().get(ref)


# ---- on a process pool -----------------------------------------------------------------------


def _keep_last(new: list[Any], old: Any) -> Any:
    return new[-1] if new else old


async def _traffic_of_five_batches(keys: int, checkpoint: Path) -> int:
    """Bytes through the driver's pipes over batches 3-7 of a state of ``keys`` keys
    receiving one new record per batch; checks the outputs on the way."""
    initial = [(f"key-{i:05d}", "x" * 40) for i in range(keys)]
    batches = [[(f"key-{b:05d}", f"new-{b}")] for b in range(7)]
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        ssc.checkpoint(str(checkpoint))
        state = ssc.queue_stream(batches).update_state_by_key(_keep_last, initial_rdd=initial)
        counts = collect_batches(state.count())
        changed = collect_batches(state.filter(lambda kv: kv[1].startswith("new")))
        await ssc.start()
        backend = ssc.spark_context.backend
        assert isinstance(backend, ProcessPoolBackend)
        await advance_batches(ssc, 2)  # the initial state goes out once
        before = backend.traffic.sent + backend.traffic.received
        await advance_batches(ssc, 5)
        moved = backend.traffic.sent + backend.traffic.received - before
    assert ssc.errors == []
    assert [n for _, [n] in counts] == [keys] * 7
    assert [sorted(records) for _, records in changed] == [
        [(f"key-{b:05d}", f"new-{b}") for b in range(k + 1)] for k in range(7)
    ]
    return moved


@pytest.mark.anyio
async def test_the_state_does_not_pass_through_the_driver_each_batch(tmp_path: Path) -> None:
    """A state 20 times larger moves (almost) no more bytes through the driver: what does
    move is the tasks and the new records. Copying the state would move it 10 times."""
    small = await _traffic_of_five_batches(2_000, tmp_path / "small")
    large = await _traffic_of_five_batches(40_000, tmp_path / "large")
    large_state_bytes = len(pickle.dumps([(f"key-{i:05d}", "x" * 40) for i in range(40_000)]))
    assert large - small < large_state_bytes / 50, (small, large, large_state_bytes)


def _kill_workers(backend: ProcessPoolBackend) -> None:
    for pid in backend.worker_pids():
        os.kill(pid, signal.SIGKILL)


def _stateful_job(ssc: StreamingContext, batches: list[list[Any]]) -> list[list[tuple[float, list[Any]]]]:
    pairs = ssc.queue_stream(batches)
    totals = pairs.update_state_by_key(lambda new, old: sum(new) + (old or 0))
    window = pairs.reduce_by_key_and_window(
        operator.add, operator.sub, 3.0, 1.0, filter_func=lambda kv: kv[1] != 0
    )
    last_seen = pairs.map_with_state(StateSpec(lambda key, value, state: _count_calls(key, state)))
    return [collect_batches(s) for s in (totals, window, last_seen, last_seen.state_snapshots())]


def _count_calls(key: str, state: Any) -> tuple[str, int]:
    calls = state.get_option(0) + 1
    state.update(calls)
    return key, calls


def _batches() -> list[list[tuple[str, int]]]:
    return [[(f"k{(b * 7 + i) % 11}", (b + i) % 5) for i in range(40)] for b in range(9)]


async def _run_job(master: str, checkpoint: Path, kill_after: int | None) -> list[Any]:
    async with StreamingContext(1.0, master=master, clock=ManualClock()) as ssc:
        ssc.checkpoint(str(checkpoint))
        outputs = _stateful_job(ssc, _batches())
        await ssc.start()
        if kill_after is None:
            await advance_batches(ssc, 9)
        else:
            await advance_batches(ssc, kill_after)
            backend = ssc.spark_context.backend
            assert isinstance(backend, ProcessPoolBackend)
            _kill_workers(backend)  # every block in memory is gone
            await advance_batches(ssc, 9 - kill_after)
            assert backend.replacements == 2
    assert ssc.errors == []
    return [[(t, sorted(records)) for t, records in out] for out in outputs]


@pytest.mark.anyio
async def test_state_and_windows_survive_every_worker_dying_between_batches(tmp_path: Path) -> None:
    reference = await _run_job("local", tmp_path / "reference", kill_after=None)
    survived = await _run_job("local[2]", tmp_path / "killed", kill_after=4)
    assert survived == reference
    assert [len(out) for out in reference] == [9, 9, 9, 9]


@pytest.mark.anyio
async def test_blocks_on_the_workers_and_on_disk_stay_bounded_by_what_is_live(tmp_path: Path) -> None:
    batches = [[(f"k{(b + i) % 13}", 1) for i in range(30)] for b in range(30)]
    files: list[int] = []
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        ssc.checkpoint(str(tmp_path / "checkpoint"))
        pairs = ssc.queue_stream(batches)
        window = pairs.reduce_by_key_and_window(operator.add, operator.sub, 5.0, 1.0)
        totals = pairs.update_state_by_key(lambda new, old: sum(new) + (old or 0))
        out = collect_batches(window.union(totals))
        await ssc.start()
        backend = ssc.spark_context.backend
        assert isinstance(backend, ProcessPoolBackend) and backend.spill_dir is not None
        for _ in range(30):
            await advance_batches(ssc, 1)
            files.append(len(os.listdir(backend.spill_dir)))
    assert ssc.errors == [] and len(out) == 30
    # A 5-batch span, the previous window and the newest states: the count stops growing.
    assert max(files[10:]) == max(files[20:]) <= 2 * (5 + 2 + 3), files


@pytest.mark.anyio
async def test_a_lost_partition_without_a_disk_copy_fails_its_batch_naming_it(tmp_path: Path) -> None:
    batches = [[("a", 1), ("b", 2)] for _ in range(4)]
    async with StreamingContext(
        1.0, master="local[2]", clock=ManualClock(), conf={"task_max_failures": 2}
    ) as ssc:
        ssc.checkpoint(str(tmp_path / "checkpoint"))
        totals = ssc.queue_stream(batches).update_state_by_key(
            lambda new, old: sum(new) + (old or 0)
        )
        out = collect_batches(totals)
        await ssc.start()
        backend = ssc.spark_context.backend
        assert isinstance(backend, ProcessPoolBackend) and backend.spill_dir is not None
        await advance_batches(ssc, 1)
        shutil.rmtree(backend.spill_dir)
        Path(backend.spill_dir).write_text("")  # disk copies can no longer be written
        await advance_batches(ssc, 1)  # state kept in memory only, with a warning
        _kill_workers(backend)
        with pytest.raises(JobFailedError, match="is lost"):
            await advance_batches(ssc, 1)
        os.unlink(backend.spill_dir)
        with pytest.raises(JobFailedError, match="is lost"):  # no one has raised it yet
            await ssc.stop()
    assert [sorted(records) for _, records in out] == [[("a", 1), ("b", 2)], [("a", 2), ("b", 4)]]
    assert len(ssc.errors) == 1
    assert "is lost" in str(ssc.errors[0]) and "partition" in str(ssc.errors[0])
