"""Parallelized partitions are pickled once into shared memory and read there by workers
(executor/shared_input.py).

The results are the pipe path's; however many jobs and batches use the RDD, its records
cross the driver's pipes at most once (never, when shared); the files live as long as the
RDD and the directory as long as the context; a missing or full shared-memory directory
falls back to the pipe with a warning, a record that cannot be pickled fails the job
naming why, and a replacement worker reads the same files.
"""

from __future__ import annotations

import gc
import logging
import operator
import os
import pickle
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiostream_engine import DataNotSerializableError, ManualClock, StreamingContext
from aiostream_engine.executor import shared_input
from aiostream_engine.executor.protocol import SLICE
from aiostream_engine.rdd.tasks import dumps_slice
from aiostream_engine.testing import advance_batches, collect_batches
from tests.file_limits import file_size_limit
from tests.shared_memory import pool, shared_files

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm (Linux only)"),
]

# Two partitions of more than one slice each: both are worth sharing.
LINES = [f"w{i % 97} w{i % 13} " + "x" * (i % 5) for i in range(2 * SLICE + 500)]
EXPECTED = dict(Counter(word for line in LINES for word in line.split()))
DATA_BYTES = len(pickle.dumps(LINES, pickle.HIGHEST_PROTOCOL))


def _word_count(rdd: Any) -> Any:
    return rdd.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)


async def _started(ssc: StreamingContext) -> None:
    """Start the context (and its pool) with a do-nothing output."""
    ssc.queue_stream([[0]]).foreach_rdd(lambda rdd: None)
    await ssc.start()


async def test_a_reused_rdd_is_pickled_once_and_read_from_shared_memory() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        shared_dir = backend.shared_dir
        assert shared_dir is not None
        rdd = ssc.spark_context.parallelize(LINES, 2)
        counts = _word_count(rdd)
        assert dict(await counts.acollect()) == EXPECTED
        files = shared_files(shared_dir)
        assert len(files) == 2  # one per partition
        sent = backend.traffic.sent
        assert dict(await counts.acollect()) == EXPECTED
        chars = rdd.map(len).map(lambda n: ("chars", n)).reduce_by_key(operator.add)
        assert await chars.acollect() == [("chars", sum(map(len, LINES)))]
        # Two more jobs: plans only, not the records again, and no new files.
        assert backend.traffic.sent - sent < DATA_BYTES / 20
        assert shared_files(shared_dir) == files
        del rdd, counts, chars
        gc.collect()
        assert shared_files(shared_dir) == []  # the RDD is gone, and its files with it
    assert not os.path.exists(shared_dir)


async def test_a_cached_collection_lets_its_shared_copies_go() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        rdd = ssc.spark_context.parallelize(LINES, 2).cache()
        counts = _word_count(rdd)
        assert dict(await counts.acollect()) == EXPECTED
        gc.collect()
        assert shared_files(backend.shared_dir) == []  # the cached blocks serve from now on
        assert dict(await counts.acollect()) == EXPECTED
        assert shared_files(backend.shared_dir) == []


async def test_a_queue_of_one_rdd_gives_every_batch_the_same_counts() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        rdd = ssc.spark_context.parallelize(LINES, 2)
        out = collect_batches(_word_count(ssc.queue_stream([rdd] * 3)))
        await ssc.start()
        await advance_batches(ssc, 3)
        assert len(shared_files(pool(ssc).shared_dir)) == 2
    assert [(t, dict(records)) for t, records in out] == [(t, EXPECTED) for t in (1.0, 2.0, 3.0)]


async def test_without_a_shared_memory_directory_partitions_are_piped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = {"shared_memory_dir": str(tmp_path / "missing")}
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(), conf=conf) as ssc:
        with caplog.at_level(logging.WARNING):
            await _started(ssc)
        assert "cannot be used" in caplog.text and "missing" in caplog.text
        backend = pool(ssc)
        assert backend.shared_dir is None
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        for _ in range(2):
            sent = backend.traffic.sent
            assert dict(await counts.acollect()) == EXPECTED
            assert backend.traffic.sent - sent > DATA_BYTES / 2  # the records, every job


async def test_a_full_shared_memory_directory_falls_back_to_the_pipe_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        assert backend.shared_dir is not None
        kept = ssc.spark_context.parallelize(LINES, 2)
        assert await kept.acount() == len(LINES)  # shared before the file system fills up
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        with caplog.at_level(logging.WARNING), file_size_limit(DATA_BYTES // 8):
            result = dict(await counts.acollect())
        assert result == EXPECTED
        assert caplog.text.count("go through the pipes to every task from now on") == 1
        assert len(shared_files(backend.shared_dir)) == 2  # kept's files, and no partial one
        sent = backend.traffic.sent
        assert dict(await counts.acollect()) == EXPECTED
        assert backend.traffic.sent - sent > DATA_BYTES / 2
        # No more attempts: a new collection is piped without being pickled for nothing.
        assert await ssc.spark_context.parallelize(LINES, 2).acount() == len(LINES)
        assert len(shared_files(backend.shared_dir)) == 2
        assert await kept.acount() == len(LINES)  # what was shared stays readable


def test_a_partition_that_would_nearly_fill_the_file_system_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = LINES[:SLICE]  # one slice
    small = [line[:2] for line in lines]
    big_bytes, small_bytes = len(dumps_slice(lines)), len(dumps_slice(small))
    assert small_bytes < big_bytes / 2
    block = 4096
    total_blocks = 20 * big_bytes // block  # a file system of 20 big slices
    free_blocks = 5 * big_bytes // (2 * block)  # 2.5 of them free; 10% must stay free
    real = os.statvfs(tmp_path)

    def nearly_full(path: Any) -> os.statvfs_result:
        return os.statvfs_result((block, block, total_blocks, free_blocks, free_blocks, *real[5:]))

    monkeypatch.setattr(shared_input.os, "statvfs", nearly_full)
    with pytest.raises(OSError, match="less than 10%"):
        anyio.run(shared_input.share_records, lines, str(tmp_path))
    assert os.listdir(tmp_path) == []
    shared = anyio.run(shared_input.share_records, small, str(tmp_path))  # leaves > 10%
    assert list(shared.open()) == small


@pytest.mark.parametrize("records", [len(LINES), 100], ids=["shared", "piped"])
async def test_a_record_that_cannot_be_pickled_fails_the_job_at_once(records: int) -> None:
    """As Spark's "task not serializable": no retries, no worker lost, no file left."""
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        runner = ssc.spark_context
        rdd = runner.parallelize([*LINES[:records], threading.Lock()], 1)
        failures = runner.task_failures
        with pytest.raises(DataNotSerializableError, match="cannot pickle '_thread.lock' object"):
            await rdd.acount()
        assert runner.task_failures - failures == (0 if records == len(LINES) else 1)
        assert backend.replacements == 0
        assert shared_files(backend.shared_dir) == []
        assert await runner.parallelize(LINES, 2).acount() == len(LINES)


async def test_replacement_workers_read_the_same_shared_partitions() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        assert dict(await counts.acollect()) == EXPECTED
        for pid in backend.worker_pids():
            os.kill(pid, signal.SIGKILL)
        sent = backend.traffic.sent
        assert dict(await counts.acollect()) == EXPECTED
        assert backend.replacements == 2
        assert backend.traffic.sent - sent < DATA_BYTES / 20  # read from the files again
        assert len(shared_files(backend.shared_dir)) == 2


async def test_concurrent_first_jobs_share_one_copy() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        rdd = ssc.spark_context.parallelize(LINES, 2)
        results: list[Any] = []

        async def count(job: Any) -> None:
            results.append(await job.acollect())

        async with anyio.create_task_group() as tg:
            tg.start_soon(count, _word_count(rdd))
            tg.start_soon(count, rdd.map(len).map(lambda n: ("chars", n)).reduce_by_key(operator.add))
        assert sorted(map(len, results)) == [1, len(EXPECTED)]
        assert len(shared_files(backend.shared_dir)) == 2


async def test_a_job_cancelled_while_sharing_leaves_no_file_and_the_next_one_shares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pickled: list[int] = []

    def counted_dumps(records: list[Any]) -> bytes:
        pickled.append(len(records))
        return dumps_slice(records)

    monkeypatch.setattr(shared_input, "dumps_slice", counted_dumps)  # a spy: it still pickles
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = pool(ssc)
        assert backend.shared_dir is not None
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        with anyio.CancelScope() as scope:
            scope.cancel()  # takes effect at the first checkpoint: after the first slice
            await counts.acollect()
        assert pickled == [SLICE]  # it was cancelled half-way through a partition's file
        assert shared_files(backend.shared_dir) == []
        assert dict(await counts.acollect()) == EXPECTED
        assert len(shared_files(backend.shared_dir)) == 2


async def test_shared_directories_of_dead_drivers_are_removed_at_start(tmp_path: Path) -> None:
    stale = tmp_path / "aiostream-shared-123456789-abc"  # its owner's lock went with it
    stale.mkdir()
    (stale / ".owner").write_bytes(b"")
    (stale / "partition").write_bytes(b"x" * 100)
    conf = {"shared_memory_dir": str(tmp_path)}
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(), conf=conf) as ssc:
        await _started(ssc)
        shared_dir = pool(ssc).shared_dir
        assert shared_dir is not None
        assert os.listdir(tmp_path) == [Path(shared_dir).name]
    assert os.listdir(tmp_path) == []
