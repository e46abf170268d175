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
import resource
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aiostream_engine import ManualClock, StreamingContext
from aiostream_engine.executor.process_pool import ProcessPoolBackend
from aiostream_engine.executor.protocol import SLICE
from aiostream_engine.testing import advance_batches, collect_batches

pytestmark = pytest.mark.anyio

# Two partitions of more than one slice each: both are worth sharing.
LINES = [f"w{i % 97} w{i % 13} " + "x" * (i % 5) for i in range(2 * SLICE + 500)]
EXPECTED = dict(Counter(word for line in LINES for word in line.split()))
DATA_BYTES = len(pickle.dumps(LINES, pickle.HIGHEST_PROTOCOL))


def _word_count(rdd: Any) -> Any:
    return rdd.flat_map(str.split).map(lambda w: (w, 1)).reduce_by_key(operator.add)


def _pool(ssc: StreamingContext) -> ProcessPoolBackend:
    backend = ssc.spark_context.backend
    assert isinstance(backend, ProcessPoolBackend)
    return backend


async def _started(ssc: StreamingContext) -> None:
    """Start the context (and its pool) with a do-nothing output."""
    ssc.queue_stream([[0]]).foreach_rdd(lambda rdd: None)
    await ssc.start()


async def test_a_reused_rdd_is_pickled_once_and_read_from_shared_memory() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = _pool(ssc)
        shared_dir = backend.shared_dir
        assert shared_dir is not None
        rdd = ssc.spark_context.parallelize(LINES, 2)
        counts = _word_count(rdd)
        assert dict(await counts.acollect()) == EXPECTED
        files = sorted(os.listdir(shared_dir))
        assert len(files) == 2  # one per partition
        sent = backend.traffic.sent
        assert dict(await counts.acollect()) == EXPECTED
        chars = rdd.map(len).map(lambda n: ("chars", n)).reduce_by_key(operator.add)
        assert await chars.acollect() == [("chars", sum(map(len, LINES)))]
        # Two more jobs: plans only, not the records again, and no new files.
        assert backend.traffic.sent - sent < DATA_BYTES / 20
        assert sorted(os.listdir(shared_dir)) == files
        del rdd, counts, chars
        gc.collect()
        assert os.listdir(shared_dir) == []  # the RDD is gone, and its files with it
    assert not os.path.exists(shared_dir)


async def test_a_queue_of_one_rdd_gives_every_batch_the_same_counts() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        rdd = ssc.spark_context.parallelize(LINES, 2)
        out = collect_batches(_word_count(ssc.queue_stream([rdd] * 3)))
        await ssc.start()
        await advance_batches(ssc, 3)
        assert len(os.listdir(_pool(ssc).shared_dir)) == 2
    assert [(t, dict(records)) for t, records in out] == [(t, EXPECTED) for t in (1.0, 2.0, 3.0)]


async def test_without_a_shared_memory_directory_partitions_are_piped(tmp_path: Path) -> None:
    conf = {"shared_memory_dir": str(tmp_path / "missing")}
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(), conf=conf) as ssc:
        await _started(ssc)
        backend = _pool(ssc)
        assert backend.shared_dir is None
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        for _ in range(2):
            sent = backend.traffic.sent
            assert dict(await counts.acollect()) == EXPECTED
            assert backend.traffic.sent - sent > DATA_BYTES / 2  # the records, every job


@contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """Writes past ``limit`` bytes fail with EFBIG in this process: a real full disk for
    the driver's files (the workers were started before, without the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_full_shared_memory_directory_falls_back_to_the_pipe_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = _pool(ssc)
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        with caplog.at_level(logging.WARNING), _file_size_limit(DATA_BYTES // 8):
            result = dict(await counts.acollect())
        assert result == EXPECTED
        assert caplog.text.count("goes through the pipe") == 2
        assert backend.shared_dir is not None and os.listdir(backend.shared_dir) == []
        sent = backend.traffic.sent
        assert dict(await counts.acollect()) == EXPECTED
        assert backend.traffic.sent - sent > DATA_BYTES / 2


async def test_a_record_that_cannot_be_pickled_fails_the_job_and_leaves_no_file() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = _pool(ssc)
        rdd = ssc.spark_context.parallelize([*LINES, threading.Lock()], 1)
        with pytest.raises(TypeError, match="lock"):
            await rdd.acount()
        assert backend.shared_dir is not None and os.listdir(backend.shared_dir) == []
        assert await ssc.spark_context.parallelize(LINES, 2).acount() == len(LINES)


async def test_replacement_workers_read_the_same_shared_partitions() -> None:
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock()) as ssc:
        await _started(ssc)
        backend = _pool(ssc)
        counts = _word_count(ssc.spark_context.parallelize(LINES, 2))
        assert dict(await counts.acollect()) == EXPECTED
        for pid in backend.worker_pids():
            os.kill(pid, signal.SIGKILL)
        assert dict(await counts.acollect()) == EXPECTED
        assert backend.replacements == 2


async def test_shared_directories_of_dead_drivers_are_removed_at_start(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = tmp_path / f"aiostream-shared-{finished.pid}-abc"
    stale.mkdir()
    (stale / "partition").write_bytes(b"x" * 100)
    conf = {"shared_memory_dir": str(tmp_path)}
    async with StreamingContext(1.0, master="local[2]", clock=ManualClock(), conf=conf) as ssc:
        await _started(ssc)
        shared_dir = _pool(ssc).shared_dir
        assert shared_dir is not None
        assert os.listdir(tmp_path) == [Path(shared_dir).name]
    assert os.listdir(tmp_path) == []
